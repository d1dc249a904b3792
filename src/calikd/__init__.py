"""calikd: calibration-aware knowledge distillation.

Data flow: data -> models -> teacher -> calibration -> distill -> engine -> metrics -> store -> report.
"""

from calikd.errors import CalikdError

__version__ = "0.1.0"
__all__ = ["CalikdError", "__version__"]
