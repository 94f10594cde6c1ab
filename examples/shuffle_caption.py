"""
Title: Shuffled captions in a tf.data pipeline
Description: Shuffle the tags of caption strings (keeping a trigger word in
front, with tag dropout) inside tf.data, feeding a model on any backend.
"""

# backends: tensorflow, jax, torch

# ## Introduction
#
# Text-to-image fine-tuning (DreamBooth / LoRA scripts such as kohya's) often
# trains on tag captions: `"sks dog, sitting, red collar, grass"`. Shuffling
# the tags at every epoch keeps the model from learning their order, keeping
# the first tag (the trigger word) in place, and dropping a few tags at random
# teaches it to work from partial captions. `keras_tricks.layers.ShuffleCaption`
# does this with TensorFlow string ops, like Keras's own `TextVectorization`,
# so it runs in a `tf.data` pipeline that feeds a model on any backend.

import os

import keras
import numpy as np
import tensorflow as tf

import keras_tricks

FAST = os.environ.get("KERAS_TRICKS_FAST") == "1"
keras.utils.set_random_seed(0)

captions = [
    "sks dog, sitting, red collar, grass, sunny",
    "sks dog, running, beach, waves",
    "sks dog, sleeping, sofa, blanket, indoor",
] * (4 if FAST else 64)

"""
## The layer

`keep_tokens=1` keeps the trigger word first; `tag_dropout=0.1` drops each
other tag with probability 0.1. Every call draws new orders.
"""

shuffle = keras_tricks.layers.ShuffleCaption(keep_tokens=1, tag_dropout=0.1, seed=0)
for _ in range(3):
    print(shuffle(captions[0]).numpy().decode())

"""
## In a tf.data pipeline

The shuffled strings go to a `TextVectorization` layer (also TensorFlow
string ops, in the pipeline) and then, as integer token ids, to a small
model on whatever backend Keras runs.
"""

vectorize = keras.layers.TextVectorization(
    max_tokens=64, output_sequence_length=8, split=lambda s: tf.strings.split(s, ", ")
)
vectorize.adapt(captions)
labels = np.array([0, 1, 2] * (len(captions) // 3))
ds = (
    tf.data.Dataset.from_tensor_slices((captions, labels))
    .shuffle(len(captions), seed=0)
    .batch(16)
    .map(lambda text, label: (vectorize(shuffle(text)), label))
)
model = keras.Sequential(
    [
        keras.Input((8,), dtype="int64"),
        keras.layers.Embedding(64, 8),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(3, activation="softmax"),
    ]
)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(ds, epochs=2 if FAST else 10, verbose=0)
print(f"accuracy on shuffled captions: {history.history['accuracy'][-1]:.3f}")
