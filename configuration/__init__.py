"""The project's one config: ``ray_config.yaml`` loaded into typed, validated pydantic models."""

from configuration.loader import ConfigError, apply_overrides, load_config
from configuration.schema import AppConfig, OCRConfig

__all__ = ["AppConfig", "OCRConfig", "ConfigError", "apply_overrides", "load_config"]
