"""Keras registration and `get_config` for every LSNet layer and model, written once.

Registered names are `lsnet>ClassName` whatever module a class lives in, so `.keras` files keep
loading when code moves (tests/test_saved_files.py loads files saved before the layout change).

Example:
    >>> import keras
    >>> @serializable("units")
    ... class Scale(keras.layers.Layer):
    ...     def __init__(self, units, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.units = units
    >>> Scale(3).get_config()["units"]
    3
"""

import keras

PACKAGE = "lsnet"


def config_fields(*fields):
    """Class decorator: `get_config` = the parent's config plus these constructor arguments,
    read from the attributes of the same names."""

    def add_get_config(cls):
        def get_config(self):
            config = super(cls, self).get_config()
            config.update({field: getattr(self, field) for field in fields})
            return config

        cls.get_config = get_config
        return cls

    return add_get_config


def serializable(*fields):
    """Class decorator: register the class for `keras.models.load_model` (as `lsnet>Name`) and,
    when `fields` are given, give it `config_fields(*fields)`. Classes that write their own
    `get_config` (the models) pass no fields."""
    register = keras.saving.register_keras_serializable(package=PACKAGE)

    def decorate(cls):
        return register(config_fields(*fields)(cls) if fields else cls)

    return decorate
