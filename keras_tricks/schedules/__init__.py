"""keras_tricks.schedules."""
