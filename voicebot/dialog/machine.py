"""The dialog state machine: a dialplan's IR driven by call events, emitting commands.

Theory of operation. The machine is sans-IO (like h11): :meth:`DialogMachine.handle` takes one
event and returns the commands it causes, and never touches a clock, socket or task. Time arrives
as ``now_s`` on every event; timers are requests (``SetTimer`` with an absolute deadline) that the
runner turns back into ``TimerFired`` events. Processing is run-to-completion: one event is fully
handled, including any chain of immediate state changes, before the next is looked at.

Entering a state assigns its ``set`` variables, emits its ``record`` entries, queues its prompt,
and then depends on the state's one exit: a *listening* state starts input at once when its
prompt allows barge-in (otherwise once the prompt has played) and arms the no-input timer once no
prompt is playing; a *webhook* state calls out immediately and moves on the answer; *transfer*,
*hangup* and plain *goto* states act once every queued prompt has played. While listening, a
non-empty partial transcript, ``SpeechStarted`` or a DTMF key stops a barge-in prompt at once and
pushes the no-input deadline back; speech with no final since does not run out as silence (one more
no-input period waits for the recognizer's answer). A final transcript (its text and the recognizer's
alternatives) is read by :func:`voicebot.dialog.understand.understand`: the state's intents, then
its digit/number capture, then the global handlers, then its free-text capture, each with a
confidence. A sure match is acted on; a guess asks "Did you say {guess}?" (the state's
``confirm``): yes acts on it, saying it again does too, no counts as a no-match of the state,
silence and unclear answers re-ask up to the question's ``retries`` and then count as the state's
no-input/no-match, and a key answers the state instead. A DTMF key goes to the digit collector in
digit states (terminator, max length and inter-digit timeout end it), otherwise to the intents'
and then the globals' keys; keys pressed while a listening state's prompt plays without barge-in
are kept (type-ahead) and fed in order once it listens. Anything unmatched counts a no-match,
silence counts a no-input; each re-prompts until its ``retries`` are used up and then escalates to
its ``goto``. ``StartListening`` carries what the state expects (:mod:`voicebot.dialog.expect`)
and is sent again whenever that changes while listening. Stale timers and answers (ids that no
longer match) are ignored.

Outbound calls. ``AnswerClassified`` (the application's answering-machine detector) sets
``answer_type`` and ``amd_reason`` and records them; it moves to the plan's ``on_machine`` /
``on_human`` / ``on_unknown`` target (unknown counts as human unless handled), stopping a prompt
that is playing even without barge-in, unless the callee has already been understood (an intent or
capture acted on: a person is talking to the robot). A target equal to the current state, a
missing handler, or a second judgement changes nothing. A ``wait_for_beep`` state holds its prompt
(and its exit) until ``BeepDetected``, ``silence_s`` without callee speech (``SpeechStarted`` /
``SpeechEnded``, a non-empty partial or a final), or ``timeout_s``, and says which in
``beep_wait``. ``record_audio`` emits ``PauseRecording`` / ``ResumeRecording`` on entry when it
changes whether the call's audio is recorded.
"""

from __future__ import annotations

from voicebot.dialog import ir
from voicebot.dialog.events import (
    AnswerClassified,
    BeepDetected,
    CallEnded,
    CallStarted,
    CallWebhook,
    Command,
    DtmfReceived,
    Event,
    FinalTranscript,
    Hangup,
    PartialTranscript,
    PauseRecording,
    PromptFinished,
    Record,
    ResumeRecording,
    SpeechEnded,
    SpeechStarted,
    StopPrompt,
    TimerFired,
    Transfer,
    TransferFailed,
    WebhookFailed,
    WebhookSucceeded,
)
from voicebot.dialog.machine_base import (
    ANSWER_WAIT,
    BEEP_SILENCE,
    BEEP_TIMEOUT,
    INTER_DIGIT,
    NO_INPUT,
    Guess,
    MachineBase,
)
from voicebot.dialog.match import NO_PHRASES, YES_PHRASES, match_dtmf, match_intent, normalize
from voicebot.dialog.understand import Hypothesis, Understanding, understand

# Immediate state changes (goto without a prompt) allowed while handling one event. The loader
# rejects silent goto loops; this bounds what is left (absurdly long chains) at run time.
MAX_CHAIN = 100

# How long finals wait for the answering-machine judgement on a call with detection, at most; the
# detector should judge a person within 3 s (issue 10). More finals than this are dropped.
ANSWER_WAIT_S = 8.0
MAX_HELD_FINALS = 8
# Keys typed ahead while a listening state's prompt (without barge-in) plays; more are dropped.
MAX_TYPEAHEAD_KEYS = 32

# The answers to "Did you say ...?".
_YES = ir.Intent("yes", tuple(normalize(p) for p in YES_PHRASES), frozenset(), None, "", builtin="yes")
_NO = ir.Intent("no", tuple(normalize(p) for p in NO_PHRASES), frozenset(), None, "", builtin="no")


class DialogMachine(MachineBase):
    """One call's dialog. Feed events to :meth:`handle`; carry out the commands it returns."""

    def handle(self, event: Event) -> list[Command]:
        """Process one event to completion and return the commands it produced, in order."""
        self._out = []
        self._chain = 0
        self._now_s = event.now_s
        if self.finished:
            return []
        if isinstance(event, CallStarted):
            self._on_call_started(event)
        elif not self.started:
            return []
        elif isinstance(event, CallEnded):
            self._finish(event.reason, hang_up=False)
        elif isinstance(event, PromptFinished):
            self._on_prompt_finished(event.prompt_seq)
        elif isinstance(event, SpeechStarted):
            self._callee_speech(speaking=True)
            self._on_speech_activity()
        elif isinstance(event, PartialTranscript):
            if event.text.strip():
                self._callee_speech(speaking=True)
                self._on_speech_activity()
        elif isinstance(event, SpeechEnded):
            self._callee_speech(speaking=False)
        elif isinstance(event, FinalTranscript):
            self._callee_speech(speaking=False)
            self._final_pending = False
            self._on_final(event.hypotheses())
        elif isinstance(event, AnswerClassified):
            self._on_answer_classified(event)
        elif isinstance(event, BeepDetected):
            if self._beep_wait is not None:
                self._end_beep_wait("beep")
        elif isinstance(event, DtmfReceived):
            self._on_dtmf(event.key)
        elif isinstance(event, TimerFired):
            self._on_timer(event.timer_id)
        elif isinstance(event, WebhookSucceeded):
            self._on_webhook_ok(event)
        elif isinstance(event, WebhookFailed):
            self._on_webhook_failed(event)
        elif isinstance(event, TransferFailed):
            self._on_transfer_failed(event.reason)
        return self._out

    # -- events --------------------------------------------------------------------------------

    def _on_call_started(self, event: CallStarted) -> None:
        if self.started:
            return
        self.started = True
        self.variables.update(event.variables)
        self.variables.update(
            call_id=event.call_id, caller=event.caller, callee=event.callee, dialplan=self.plan.name
        )
        if event.answer_detection and self.plan.on_answer:
            # A voicemail greeting's words ("not available right now") must not answer the start
            # state's question: finals wait for the judgement (or ANSWER_WAIT_S), keys do not.
            self._holding = True
            self._arm(ANSWER_WAIT, ANSWER_WAIT_S)
        self._enter(self.plan.start)

    def _stop_holding(self, *, replay: bool) -> None:
        """The judgement came (or never will): what was said meanwhile is heard now, or dropped."""
        self._holding = False
        self._cancel(ANSWER_WAIT)
        held, self._held = self._held, []
        state = self.state
        for hypotheses in held if replay else []:
            if self.finished or self.state is not state:
                break  # the rest was said to a question the caller has moved past
            self._on_final(hypotheses)

    def _on_answer_classified(self, event: AnswerClassified) -> None:
        if self.answer_type is not None:
            return  # the first judgement counts; the detector decides once
        self.answer_type = event.result
        for key, value in (("answer_type", event.result), ("amd_reason", event.reason)):
            self.variables[key] = value
            self.record[key] = value
            self._emit(Record(key, value))
        target = self.plan.answer_target(event.result)
        state = self.state
        if target is None or state is None or self.understood_caller or target == state.name:
            # No handler, a person is already answering, or the handler says "carry on here".
            self._stop_holding(replay=True)
            return
        self._stop_holding(replay=False)  # said to the state being left: a greeting, or moot
        if self._playing:
            # Leaving mid-prompt: the robot must not talk over the greeting (or a person's reply).
            self._emit(StopPrompt(barge_in=False))
            self._playing = []
        self._enter(target)

    def _callee_speech(self, *, speaking: bool) -> None:
        """Track whether the callee talks, so a ``wait_for_beep`` state can time the silence."""
        self._callee_speaking = speaking
        if self._beep_wait is None:
            return
        if speaking:
            self._cancel(BEEP_SILENCE)
        elif BEEP_SILENCE not in self._timers:
            self._arm(BEEP_SILENCE, self._beep_wait.silence_s)

    def _end_beep_wait(self, how: str) -> None:
        self._beep_wait = None
        self._cancel(BEEP_TIMEOUT)
        self._cancel(BEEP_SILENCE)
        self.variables["beep_wait"] = how
        assert self.state is not None
        self._begin(self.state)

    def _on_prompt_finished(self, seq: int) -> None:
        before = len(self._playing)
        self._playing = [p for p in self._playing if p.seq != seq]
        if before and not self._playing:
            self._prompts_done()

    def _on_speech_activity(self) -> None:
        if not self._listening:
            return
        self._final_pending = True
        if not self._barge_in() and NO_INPUT in self._timers:
            self._arm_no_input()

    def _barge_in(self) -> bool:
        """Stop a playing barge-in prompt; True if one was stopped."""
        if self._playing and self._playing[0].barge_in:
            self._emit(StopPrompt())
            self._playing = []
            self._prompts_done()
            return True
        return False

    def _on_final(self, hypotheses: tuple[Hypothesis, ...]) -> None:
        state = self.state
        if not self._listening or state is None or state.listen is None:
            return
        said = any(h.text.strip() for h in hypotheses)
        if said and self._holding and len(self._held) < MAX_HELD_FINALS:
            self._held.append(hypotheses)
        if not said or self._holding:
            # Noise or nothing recognized (or held): not an answer, not silence either; keep waiting.
            if NO_INPUT in self._timers:
                self._arm_no_input()
            return
        self._barge_in()
        if self._guess is not None:
            self._on_confirm_answer(hypotheses)
            return
        found = understand(hypotheses, state.listen, self.plan.global_intents, keyed_digits=self._digits,
                           similarity=self.similarity)
        self.last_understanding = found
        self._apply(found)

    def _apply(self, found: Understanding) -> None:
        state = self.state
        assert state is not None and state.listen is not None
        listen = state.listen
        if found.kind == "intent" and found.intent is not None:
            if found.decision == "act":
                self._take(found.intent.goto)
            elif found.decision == "confirm":
                self._ask_confirm(Guess(found.intent, listen.confirm.merged(found.intent.confirm)))
            else:
                self._no_match()
        elif found.kind == "digits" and found.decision == "confirm" and listen.capture is not None:
            policy = listen.confirm.merged(listen.capture.confirm)
            self._ask_confirm(Guess(None, policy, digits=self._digits + found.digits))
        elif found.kind == "digits":
            self._digits += found.digits
            self._finish_digits()
        elif found.kind == "text" and listen.capture is not None:
            self.variables[listen.capture.into] = found.text
            self._take(listen.capture.goto)
        else:
            self._no_match()

    def _on_confirm_answer(self, hypotheses: tuple[Hypothesis, ...]) -> None:
        """The caller answered "Did you say X?": yes acts on X, no is a no-match of the state; the
        caller may also just say what they want again (X again counts as yes)."""
        state, guess = self.state, self._guess
        assert state is not None and state.listen is not None and guess is not None
        yes_no: str | None = None
        for hypothesis in hypotheses:
            tokens = normalize(hypothesis.text)
            matches = ((i, match_intent(tokens, (i,))) for i in (_YES, _NO))
            sure = [i.builtin for i, m in matches if m is not None and m.confidence >= guess.policy.act_above]
            if len(sure) == 1:
                yes_no = sure[0]
                break  # both ("yes... no, wait") is no answer: the question is asked again
        said = understand(hypotheses, state.listen, self.plan.global_intents)
        self.last_understanding = said
        if yes_no is None and said.kind in ("digits", "text"):
            self._end_confirm()  # the caller went on with what the state asks for
            self._apply(said)  # every outcome moves on or re-prompts, which re-sends expectations
            return
        other = said.intent if said.kind == "intent" else None
        if other is not None and other.builtin is not None:
            other = None  # "yes" also matches a state's own yes intent; it answers the question here
        if yes_no == "yes" and guess.intent is None:
            self._end_confirm()
            self._digits = guess.digits  # the number read back, keyed digits included
            self._finish_digits()
        elif yes_no == "yes" or (guess.intent is not None and yes_no is None and other is guess.intent
                                 and said.decision != "reject"):
            assert guess.intent is not None
            self._guess = None
            self._take(guess.intent.goto)
        elif other is not None and other is not guess.intent and said.decision == "act":
            self._guess = None  # "no, balance": the caller said what they want instead
            self._take(other.goto)
        elif yes_no == "no":
            self._end_confirm()
            self._no_match()
        else:
            guess.no_match += 1
            guess.no_input = 0
            if guess.no_match > guess.policy.retries:
                self._end_confirm()
                self._no_match()
            else:
                self._ask_confirm(guess)

    def _ask_confirm(self, guess: Guess) -> None:
        """Ask "Did you say {guess}?" (again, when ``guess`` is the one being asked)."""
        state = self.state
        assert state is not None and state.listen is not None
        self._guess = guess
        self.variables["guess"] = guess.say
        self._digits = ""
        self._cancel(INTER_DIGIT)
        self._cancel(NO_INPUT)
        prompt = guess.policy.prompt or ir.default_confirm_prompt(self.plan.voice)
        self._play(prompt)
        if prompt.barge_in:
            self._start_listening()
        else:
            self._stop_listening()

    def _end_confirm(self) -> None:
        self._guess = None
        self.variables.pop("guess", None)

    def _on_dtmf(self, key: str) -> None:
        state = self.state
        if state is None or state.listen is None:
            return  # keys in a state that does not listen belong to no question: dropped
        if not self._listening:
            # Type-ahead: a caller who knows the menu keys it during a prompt without barge-in.
            if len(self._typeahead) < MAX_TYPEAHEAD_KEYS:
                self._typeahead.append(key)
            else:
                self.typeahead_dropped += 1
            return
        self._barge_in()
        if self._guess is not None:
            self._end_confirm()  # a key is an answer to the menu, not to "did you say"
            self._start_listening()
        listen = state.listen
        capture = listen.capture
        if capture is not None and capture.kind in ("digits", "number"):
            if capture.terminator is not None and key == capture.terminator:
                self._cancel(INTER_DIGIT)
                self._finish_digits()
                return
            if key.isdigit():
                self._digits += key
                self._cancel(NO_INPUT)
                if len(self._digits) >= capture.max_digits:
                    self._cancel(INTER_DIGIT)
                    self._finish_digits()
                else:
                    self._arm(INTER_DIGIT, capture.inter_digit_timeout_s)
                return
        intent = match_dtmf(key, listen.intents) or match_dtmf(key, self.plan.global_intents)
        if intent is not None:
            self._take(intent.goto)
        else:
            self._no_match()

    def _drain_typeahead(self) -> None:
        """Feed the keys typed ahead, in order, once the state listens. A key that moves the
        caller on leaves the rest for the next state, if that one listens (:meth:`_enter`)."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._typeahead and self._listening and not self.finished:
                self._on_dtmf(self._typeahead.pop(0))
        finally:
            self._draining = False

    def _on_timer(self, timer_id: str) -> None:
        kind = next((k for k, v in self._timers.items() if v == timer_id), None)
        if kind is None:
            return  # stale: cancelled or replaced after the runner had already fired it
        del self._timers[kind]
        if kind == NO_INPUT and self._guess is not None:
            guess = self._guess
            guess.no_input += 1
            if guess.no_input > guess.policy.retries:
                self._end_confirm()
                self._no_input()
            else:
                self._ask_confirm(guess)
        elif kind == NO_INPUT and self._held:
            self._arm_no_input()  # not silence: the caller spoke, the judgement is still out
        elif kind == NO_INPUT and self._final_pending:
            # Not silence either: the caller spoke and the recognizer has not answered yet (a busy
            # recognizer can take seconds). Re-prompting now would talk over the answer and open a
            # new recognition session on the same words; wait one more no-input period, once per
            # burst of speech, so a recognizer that never answers still ends in no-input.
            self._final_pending = False
            self._arm_no_input()
        elif kind == NO_INPUT:
            self._no_input()
        elif kind == INTER_DIGIT:
            self._finish_digits()
        elif kind == ANSWER_WAIT:
            self._stop_holding(replay=True)
        elif kind == BEEP_TIMEOUT:
            self._end_beep_wait("timeout")
        elif kind == BEEP_SILENCE:
            self._end_beep_wait("silence")

    def _on_webhook_ok(self, event: WebhookSucceeded) -> None:
        state = self.state
        if event.request_id != self._webhook_pending or state is None or state.webhook is None:
            return
        self._webhook_pending = None
        webhook = state.webhook
        self.variables.update(event.variables)
        if event.next_state is None:
            self._enter(webhook.goto)
        elif event.next_state in webhook.may_goto or event.next_state in (webhook.goto, webhook.on_error):
            self._enter(event.next_state)
        else:
            self.variables["webhook_error"] = (
                f"answer chose state '{event.next_state}', which is not in the webhook's may_goto"
            )
            self._enter(webhook.on_error)

    def _on_webhook_failed(self, event: WebhookFailed) -> None:
        state = self.state
        if event.request_id != self._webhook_pending or state is None or state.webhook is None:
            return
        self._webhook_pending = None
        self.variables["webhook_error"] = event.reason
        self._enter(state.webhook.on_error)

    def _on_transfer_failed(self, reason: str) -> None:
        state = self.state
        if not self._transferring or state is None or state.transfer is None:
            return
        self._transferring = False
        self.variables["transfer_error"] = reason
        if state.transfer.on_error is not None:
            self._enter(state.transfer.on_error)
        else:
            self._finish(f"transfer failed: {reason}", hang_up=True)

    # -- states --------------------------------------------------------------------------------

    def _take(self, name: str) -> None:
        """Move on because the caller said or keyed something the state understood."""
        self.understood_caller = True
        self._enter(name)

    def _enter(self, name: str) -> None:
        self._chain += 1
        if self._chain > MAX_CHAIN:
            self._finish(f"more than {MAX_CHAIN} state changes without waiting for the caller at '{name}'",
                         hang_up=True)
            return
        state = self.plan.states[name]
        self.state = state
        self.transitions.append(name)
        self.variables["state"] = name
        self._cancel(NO_INPUT)
        self._cancel(INTER_DIGIT)
        self._cancel(BEEP_TIMEOUT)
        self._cancel(BEEP_SILENCE)
        self._beep_wait = None
        self._no_input_count = 0
        self._no_match_count = 0
        self._digits = ""
        self._webhook_pending = None
        self._guess = None
        self.variables.pop("guess", None)
        self._prompt_text = ""
        self._held = []  # held finals answer the state they were said in, not this one
        self._final_pending = False
        if not (self._draining and state.listen is not None):
            # Keys typed ahead stay with the state they were typed in; only the rest of a burst
            # that moved the caller on carries into the next state, and only if that one listens.
            self._typeahead = []
        for var, template in state.set_vars:
            self.variables[var] = template.render(self.variables)
        for key, template in state.record:
            value = template.render(self.variables)
            self.record[key] = value
            self._emit(Record(key, value))
        if state.record_audio is not None and (state.record_audio == "pause") != self.recording_paused:
            self.recording_paused = state.record_audio == "pause"
            self._emit(PauseRecording() if self.recording_paused else ResumeRecording())
        if state.wait_for_beep is not None:
            self._stop_listening()
            self._beep_wait = state.wait_for_beep
            self._arm(BEEP_TIMEOUT, state.wait_for_beep.timeout_s)
            if not self._callee_speaking:
                self._arm(BEEP_SILENCE, state.wait_for_beep.silence_s)
            return
        self._begin(state)

    def _begin(self, state: ir.State) -> None:
        """The state's prompt and exit, once any wait for the beep is over."""
        if state.listen is None:
            self._stop_listening()
        if state.prompt is not None:
            self._play(state.prompt)
        if state.webhook is not None:
            self._webhook_seq += 1
            self._webhook_pending = f"webhook-{self._webhook_seq}"
            self._emit(CallWebhook(
                request_id=self._webhook_pending,
                url=state.webhook.url.render(self.variables),
                payload=self.context(),
                timeout_s=state.webhook.timeout_s,
            ))
            return
        if state.listen is not None:
            if self._playing and not self._playing[-1].barge_in:
                self._stop_listening()
            else:
                self._start_listening()
        if not self._playing:
            self._prompts_done()

    def _prompts_done(self) -> None:
        """Every queued prompt has played (or been stopped): do what the state waits for."""
        state = self.state
        if state is None or self.finished:
            return
        if state.listen is not None:
            self._start_listening()
            self._arm_no_input()
            self._drain_typeahead()
        elif state.transfer is not None:
            if not self._transferring:
                self._transferring = True
                self._emit(Transfer(state.transfer.uri.render(self.variables)))
        elif state.hangup:
            self._finish("dialplan hangup", hang_up=True)
        elif state.goto is not None:
            self._enter(state.goto)

    def _reprompt(self, retry: ir.Retry) -> None:
        state = self.state
        assert state is not None
        prompt = retry.prompt or state.prompt
        self._digits = ""
        self._cancel(INTER_DIGIT)
        self._cancel(NO_INPUT)
        if prompt is None:
            self._start_listening()
            self._arm_no_input()
            return
        self._play(prompt)
        if prompt.barge_in:
            self._start_listening()  # same input, a new prompt: the expectation changes
        else:
            self._stop_listening()

    def _no_input(self) -> None:
        state = self.state
        assert state is not None and state.no_input is not None
        self._no_input_count += 1
        if self._no_input_count > state.no_input.retries:
            self._enter(state.no_input.goto)
        else:
            self._reprompt(state.no_input)

    def _no_match(self) -> None:
        state = self.state
        assert state is not None
        self._no_input_count = 0  # "no input in a row" counts silences only
        self._no_match_count += 1
        retry = state.no_match
        if retry is None:
            # Free-text states need no no_match; an empty capture cannot get here.
            self._start_listening()
            self._arm_no_input()
            return
        if self._no_match_count > retry.retries:
            self._enter(retry.goto)
        else:
            self._reprompt(retry)

    def _finish_digits(self) -> None:
        state = self.state
        assert state is not None and state.listen is not None and state.listen.capture is not None
        capture = state.listen.capture
        digits, self._digits = self._digits, ""
        # Spoken digits are whatever the recognizer wrote that str.isdigit takes: '²' (which int()
        # refuses) is no answer; '١٢' (Arabic-Indic) is 12, kept in ASCII as keyed digits are.
        if not capture.min_digits <= len(digits) <= capture.max_digits or not digits.isdecimal():
            self._no_match()
            return
        digits = "".join(str(int(d)) for d in digits)
        self.variables[capture.into] = str(int(digits)) if capture.kind == "number" else digits
        self._take(capture.goto)

    def _finish(self, reason: str, *, hang_up: bool) -> None:
        for kind in list(self._timers):
            self._cancel(kind)
        self._stop_listening()
        if hang_up:
            self._emit(Hangup(reason))
        self.finished = True
        self.end_reason = reason
