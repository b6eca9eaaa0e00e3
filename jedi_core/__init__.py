"""jedi_core: JEDI (Joint Embedding DIffusion), a latent diffusion world model for model-based RL on
Atari100k.

The package holds the whole model and training loop; the notebooks in ``notebooks/`` teach it step by step.
"""

from jedi_core.config import Config, ConfigError
from jedi_core.presets import make_config

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "make_config", "__version__"]
