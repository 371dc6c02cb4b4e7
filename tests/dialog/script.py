"""A scripted caller for the pure dialog machine: events in, commands out, on a fake clock.

The driver plays the call pipeline's part: it remembers which prompts are queued, which timers
are set and which webhook is pending, so a script can say "the prompt finished", "6 seconds of
silence" or "the webhook answered" and get the commands that caused, in a compact notation:

``play:<text prefix>`` (barge-in prompt), ``play!:<text prefix>`` (no barge-in), ``stop``,
``listen``, ``mute``, ``timer:<kind>+<delay s>``, ``cancel:<kind>``, ``webhook:<url>``,
``transfer:<uri>``, ``hangup:<reason>``, ``record:<key>=<value>``, ``stop:leave`` (a prompt
stopped because the dialog left the state), ``rec:pause`` / ``rec:resume`` (the audio recording).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voicebot.dialog import events as ev
from voicebot.dialog.ir import Dialplan
from voicebot.dialog.machine import DialogMachine
from voicebot.dialog.understand import Similarity


def describe(command: ev.Command, now_s: float) -> str:
    if isinstance(command, ev.PlayPrompt):
        mark = "play" if command.barge_in else "play!"
        return f"{mark}:{command.text if command.text is not None else command.audio_file}"
    if isinstance(command, ev.StopPrompt):
        return "stop" if command.barge_in else "stop:leave"
    if isinstance(command, ev.PauseRecording):
        return "rec:pause"
    if isinstance(command, ev.ResumeRecording):
        return "rec:resume"
    if isinstance(command, ev.StartListening):
        return "listen"
    if isinstance(command, ev.StopListening):
        return "mute"
    if isinstance(command, ev.SetTimer):
        kind = command.timer_id.rsplit("-", 1)[0]
        return f"timer:{kind}+{command.deadline_s - now_s:g}"
    if isinstance(command, ev.CancelTimer):
        return f"cancel:{command.timer_id.rsplit('-', 1)[0]}"
    if isinstance(command, ev.CallWebhook):
        return f"webhook:{command.url}"
    if isinstance(command, ev.Transfer):
        return f"transfer:{command.uri}"
    if isinstance(command, ev.Hangup):
        return f"hangup:{command.reason}"
    if isinstance(command, ev.Record):
        return f"record:{command.key}={command.value}"
    raise AssertionError(f"unknown command {command!r}")


def matches(described: list[str], expected: list[str]) -> bool:
    if len(described) != len(expected):
        return False
    for got, want in zip(described, expected, strict=True):
        if want.startswith(("play:", "play!:")):
            if not got.startswith(want):
                return False
        elif got != want:
            return False
    return True


@dataclass
class Driver:
    plan: Dialplan
    now_s: float = 100.0
    machine: DialogMachine = field(init=False)
    timers: dict[str, float] = field(default_factory=dict)
    playing: list[int] = field(default_factory=list)
    webhook: ev.CallWebhook | None = None
    log: list[ev.Command] = field(default_factory=list)
    similarity: Similarity | None = None  # the machine's guesses by meaning

    def __post_init__(self) -> None:
        self.machine = DialogMachine(self.plan, similarity=self.similarity)

    def feed(self, event: ev.Event) -> list[ev.Command]:
        commands = self.machine.handle(event)
        for command in commands:
            if isinstance(command, ev.SetTimer):
                self.timers[command.timer_id] = command.deadline_s
            elif isinstance(command, ev.CancelTimer):
                self.timers.pop(command.timer_id, None)
            elif isinstance(command, ev.PlayPrompt):
                self.playing.append(command.prompt_seq)
            elif isinstance(command, ev.StopPrompt):
                self.playing.clear()
            elif isinstance(command, ev.CallWebhook):
                self.webhook = command
        self.log += commands
        return commands

    def _feed_at(self, event: ev.Event) -> list[tuple[ev.Command, float]]:
        return [(command, self.now_s) for command in self.feed(event)]

    def act(self, action: str, arg: Any = None) -> list[tuple[ev.Command, float]]:
        """Do one scripted thing; returns the commands with the clock time each was issued at."""
        out: list[tuple[ev.Command, float]] = []
        if action in ("start", "start_amd"):
            # start_amd: an outbound call on which the answering-machine detector runs.
            variables: Mapping[str, str] = arg or {}
            started = ev.CallStarted(self.now_s, "call-1", "+15551230000", "+15550001111", variables,
                                     answer_detection=action == "start_amd")
            out += self._feed_at(started)
        elif action == "done":
            # The prompts queued now play out in order (ones queued meanwhile wait for the next "done").
            for seq in list(self.playing):
                if seq in self.playing:
                    self.playing.remove(seq)
                    out += self._feed_at(ev.PromptFinished(self.now_s, seq))
        elif action == "say":
            # A tuple is the recognizer's n-best: the best text first, then the alternatives.
            if isinstance(arg, tuple):
                out += self._feed_at(ev.FinalTranscript(self.now_s, arg[0], alternatives=tuple(arg[1:])))
            else:
                out += self._feed_at(ev.FinalTranscript(self.now_s, arg))
        elif action == "partial":
            out += self._feed_at(ev.PartialTranscript(self.now_s, arg))
        elif action == "vad":
            out += self._feed_at(ev.SpeechStarted(self.now_s))
        elif action == "vad_end":
            out += self._feed_at(ev.SpeechEnded(self.now_s))
        elif action == "amd":
            result, reason = arg
            out += self._feed_at(ev.AnswerClassified(self.now_s, result, reason))
        elif action == "beep":
            out += self._feed_at(ev.BeepDetected(self.now_s))
        elif action == "dtmf":
            for key in arg:
                out += self._feed_at(ev.DtmfReceived(self.now_s, key))
        elif action == "wait":
            end = self.now_s + float(arg)
            while True:
                due = sorted((deadline, tid) for tid, deadline in self.timers.items() if deadline <= end)
                if not due:
                    break
                deadline, timer_id = due[0]
                del self.timers[timer_id]
                self.now_s = deadline
                out += self._feed_at(ev.TimerFired(self.now_s, timer_id))
            self.now_s = end
        elif action == "hook_ok":
            assert self.webhook is not None, "no webhook pending"
            answer = arg or {}
            out += self._feed_at(ev.WebhookSucceeded(
                self.now_s, self.webhook.request_id, answer.get("variables", {}), answer.get("next")
            ))
        elif action == "hook_fail":
            assert self.webhook is not None, "no webhook pending"
            out += self._feed_at(ev.WebhookFailed(self.now_s, self.webhook.request_id, arg))
        elif action == "xfer_fail":
            out += self._feed_at(ev.TransferFailed(self.now_s, arg))
        elif action == "hangup":
            out += self._feed_at(ev.CallEnded(self.now_s, "caller hung up"))
        else:
            raise AssertionError(f"unknown action {action}")
        return out

    def run(self, steps: list[tuple[str, Any, list[str] | None]]) -> None:
        for i, (action, arg, expected) in enumerate(steps):
            commands = self.act(action, arg)
            if expected is None:
                continue
            # Timer deadlines are shown relative to when the command was issued.
            described = [describe(command, at_s) for command, at_s in commands]
            assert matches(described, expected), (
                f"step {i} {action}({arg!r}) in state {self.machine.state_name}:\n"
                f"  got      {described}\n  expected {expected}"
            )
