"""Plots (L2): compute plot data as typed tuples, then draw with plotly (imported only when drawing)."""

from ._index import IndexEntry, IndexSection, index_data, write_index
from ._pareto import ParetoPageData, StudyHeader, TrialPoint, pareto_figures, pareto_page_data, write_pareto_page
from ._report import (
    Curves,
    GateDynamics,
    GateFrames,
    GroupsPerLayer,
    ReportData,
    read_history,
    report_data,
    write_report,
)

__all__ = ["report_data", "write_report", "read_history", "ReportData", "GroupsPerLayer", "GateDynamics",
           "GateFrames", "Curves", "index_data", "write_index", "IndexSection", "IndexEntry",
           "pareto_page_data", "pareto_figures", "write_pareto_page", "ParetoPageData", "StudyHeader", "TrialPoint"]
