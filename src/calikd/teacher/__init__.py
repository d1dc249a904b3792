"""Teacher training: ``train_teacher(TeacherConfig(...))``."""

from calikd.teacher.config import TeacherConfig
from calikd.teacher.train import TeacherResult, train_one_epoch, train_teacher

__all__ = ["TeacherConfig", "TeacherResult", "train_one_epoch", "train_teacher"]
