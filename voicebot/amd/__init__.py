"""Answering-machine detection: greeting cadence, voicemail phrases and the beep (pure)."""

from voicebot.amd.detector import (
    MACHINE_PHRASES,
    AmdDecided,
    AmdEvent,
    AmdResult,
    AmdSettings,
    AnsweringMachineDetector,
    machine_phrase,
)
from voicebot.amd.tone import BeepDetected, BeepDetector

__all__ = [
    "MACHINE_PHRASES", "AmdDecided", "AmdEvent", "AmdResult", "AmdSettings", "AnsweringMachineDetector",
    "BeepDetected", "BeepDetector", "machine_phrase",
]
