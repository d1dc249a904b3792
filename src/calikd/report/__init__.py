"""Reports: reliability diagrams (PNG) and Markdown/JSON tables."""

from calikd.report.reliability import ReliabilityPanel, plot_reliability_diagrams

__all__ = ["ReliabilityPanel", "plot_reliability_diagrams"]
