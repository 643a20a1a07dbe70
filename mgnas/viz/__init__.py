"""Plots (L2): compute plot data as typed tuples, then draw with plotly (imported only when drawing)."""

from ._index import IndexEntry, IndexSection, index_data, write_index
from ._report import Curves, GateDynamics, GroupsPerLayer, ReportData, read_history, report_data, write_report

__all__ = ["report_data", "write_report", "read_history", "ReportData", "GroupsPerLayer", "GateDynamics", "Curves",
           "index_data", "write_index", "IndexSection", "IndexEntry"]
