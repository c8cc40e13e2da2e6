"""`model.quantize(recipe=…)`: recipes as data, real engines behind them, one saved form for all."""

from .encodings import Encodings, EncodingsError, TensorEncoding
from .quantize import QuantizationState, quantize_model
from .recipe import Recipe, RecipeError, available_recipes, load_recipe

__all__ = [
    "Encodings",
    "EncodingsError",
    "QuantizationState",
    "Recipe",
    "RecipeError",
    "TensorEncoding",
    "available_recipes",
    "load_recipe",
    "quantize_model",
]
