"""calikd: calibration-aware knowledge distillation.

Data flow: data -> models -> teacher -> calibration -> distill -> engine -> metrics -> store -> report.
"""

from calikd._startup import tune_process

tune_process()  # before torch is imported: OpenMP wait policy and the allocator (see calikd._startup)

from calikd.errors import CalikdError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["CalikdError", "__version__", "tune_process"]
