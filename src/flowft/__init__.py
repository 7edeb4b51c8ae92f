"""flowft: RL finetuning of flow-matching robot control policies (OGPO and baselines)."""

__version__ = "0.1.0"

from flowft.deploy import load_policy  # noqa: E402

__all__ = ["__version__", "load_policy"]
