"""The models entries train, chosen by name: the built-in autoencoder and denoiser, or a plugin's."""

from bench.models.registry import ModelContext, build_model, get_model_info, model_names, register_model

__all__ = ["ModelContext", "build_model", "get_model_info", "model_names", "register_model"]
