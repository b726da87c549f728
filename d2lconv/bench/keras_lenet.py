"""LeNet in Keras 3 as its users write it: ``keras.Sequential`` (NHWC, Glorot-uniform kernels and
zero biases by default), ``SGD``, ``model.fit`` on NumPy arrays. Import only after
``KERAS_BACKEND`` is set."""

from __future__ import annotations

import keras
from keras import layers


def lenet():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(6, 5, padding="same", activation="sigmoid"), layers.AveragePooling2D(2, 2),
        layers.Conv2D(16, 5, activation="sigmoid"), layers.AveragePooling2D(2, 2), layers.Flatten(),
        layers.Dense(120, activation="sigmoid"), layers.Dense(84, activation="sigmoid"), layers.Dense(10),
    ])


def fit_function(batch_size: int):
    """A ``fit(data, val, epochs, lr, mark)`` for :func:`d2lconv.bench.timed_fit` over whole
    arrays ``data = (X, y)``, batched by ``model.fit`` in order (no shuffling)."""

    def nhwc(X):  # one channel: NCHW -> NHWC is a reshape; a Keras user's data is NHWC
        return X.reshape(X.shape[0], X.shape[2], X.shape[3], X.shape[1])

    def fit(data, val, epochs, lr, mark):
        model = lenet()
        model.compile(optimizer=keras.optimizers.SGD(lr),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(nhwc(data[0]), data[1], batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0,
                            validation_data=(nhwc(val[0]), val[1]),
                            callbacks=[keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: mark())])
        return history.history["loss"][-1]

    return fit
