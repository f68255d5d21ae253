"""``careledger simulate``: a seeded, reproducible 奉化区 district event generator (no Kafka here)."""

from producers.simulate.generator import CalibrationError, SimConfig, generate
from producers.simulate.report import ReportCounter, ReportRow, load_report

__all__ = ["CalibrationError", "ReportCounter", "ReportRow", "SimConfig", "generate", "load_report"]
