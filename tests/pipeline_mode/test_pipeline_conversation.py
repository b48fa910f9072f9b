"""Pipeline mode's conversation rules, replayed through the Sans-I/O core in milliseconds.

Each test feeds `PipelineConversation` a sequence of events (with explicit `now`) and checks the
actions it returns, the way `PipelineMode` would execute them.
"""

from __future__ import annotations

import pytest

from agent.conversation.pipeline import (
    BYTES_PER_MS,
    Action,
    AnnouncementDone,
    AwaitPlayout,
    BargeIn,
    Begin,
    Cancel,
    End,
    ErrorEarcon,
    Feed,
    Flush,
    HeardMs,
    Latency,
    NewAnnouncement,
    NewTurn,
    PipelineConversation,
    Produce,
    SetState,
    TurnDone,
    spoken_prefix,
)
from agent.status import AgentState

pytestmark = pytest.mark.unit

BUSY = frozenset({AgentState.THINKING, AgentState.SPEAKING})


def core(history_turns: int = 8) -> PipelineConversation:
    return PipelineConversation("be brief", history_turns, idle_state=AgentState.LISTENING)


def pcm(ms: int) -> bytes:
    return b"\0" * (ms * BYTES_PER_MS)


def of(actions: list[Action], kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def rid_of(actions: list[Action]) -> str:
    (new,) = of(actions, NewTurn) + of(actions, NewAnnouncement)
    return new.rid


def answer(c: PipelineConversation, rid: str, text: str, ms: int) -> None:
    """`rid` is synthesized completely: `ms` of audio for `text`."""
    c.audio(rid, pcm(ms))
    c.synthesis_complete(rid)
    c.produced(rid, "done", text)


# --- turns and state --------------------------------------------------------------------------


def test_a_transcript_starts_a_turn_thinking_then_speaking_then_idle() -> None:
    c = core()
    assert c.speech_started(10.0, playing=False) == [SetState(AgentState.LISTENING)]
    c.speech_stopped(11.0)
    actions = c.transcript("  what time is it ", 11.4)
    assert actions == [NewTurn("turn-1", "what time is it", 11.0), Produce("turn-1"),
                       SetState(AgentState.THINKING)]
    assert c.audio("turn-1", pcm(100)) == [Begin("turn-1"), SetState(AgentState.SPEAKING),
                                           Feed("turn-1", pcm(100))]
    assert c.audio("turn-1", pcm(50)) == [Feed("turn-1", pcm(50))]
    c.synthesis_complete("turn-1")
    assert c.produced("turn-1", "done", "It is noon.") == [End("turn-1"), AwaitPlayout("turn-1")]
    done = c.output_finished("turn-1", 12.5, flushed=False, first_audible=11.9)
    assert done == [Latency("turn-1", pytest.approx(900.0)),
                    TurnDone("turn-1", "It is noon.", False, pytest.approx(900.0), count=True),
                    SetState(AgentState.LISTENING, only_from=BUSY)]
    assert [(t.user, t.assistant) for t in c.history.turns] == [("what time is it", "It is noon.")]


def test_a_blank_transcript_starts_nothing_and_consumes_the_speech_end() -> None:
    c = core()
    c.speech_stopped(5.0)
    assert c.transcript("   ", 5.2) == []
    assert of(c.transcript("hello", 9.0), NewTurn) == [NewTurn("turn-1", "hello", 9.0)]


def test_ask_measures_latency_from_the_request() -> None:
    c = core()
    rid = rid_of(c.ask("hi", 100.0))
    answer(c, rid, "Hello.", 200)
    assert of(c.output_finished(rid, 101.0, flushed=False, first_audible=100.65), Latency) == [
        Latency(rid, pytest.approx(650.0))]


def test_nothing_happens_after_stopping() -> None:
    c = core()
    c.stopping = True
    assert c.transcript("hello", 1.0) == []


# --- barge-in -----------------------------------------------------------------------------------


def test_barge_in_while_thinking_cancels_the_turn_and_counts() -> None:
    c = core()
    rid = rid_of(c.ask("tell me a story", 1.0))
    actions = c.speech_started(1.5, playing=False)
    assert actions == [Flush(), Cancel(rid), BargeIn(), SetState(AgentState.LISTENING)]
    assert c.produced(rid, "cancelled", "") == [End(rid), AwaitPlayout(rid)]
    done = c.output_finished(rid, 1.6, flushed=False)
    assert of(done, TurnDone) == [TurnDone(rid, "", True, None, count=True)]
    assert of(done, Latency) == []
    assert c.history.turns == ()  # nothing was said: left out


def test_barge_in_while_speaking_records_the_heard_prefix_with_an_ellipsis() -> None:
    c = core()
    rid = rid_of(c.ask("count", 1.0))
    text = "One two three four five six seven eight nine ten."
    c.audio(rid, pcm(4000))
    actions = c.speech_started(3.0, playing=True)
    assert actions[:3] == [Flush(), Cancel(rid), BargeIn()]
    c.produced(rid, "cancelled", text)
    done = c.output_finished(rid, 3.1, flushed=True, heard_ms=1000.0, first_audible=1.8)
    assert done[0] == HeardMs(rid, 1000.0)
    assert of(done, Latency) == []  # an interrupted answer has no latency figure
    (turn_done,) = of(done, TurnDone)
    assert turn_done.interrupted and turn_done.answered == text
    # 4 s of audio covers 56 characters at 14 chars/s (all 50 here); 1/4 of it was heard:
    # 12 characters, cut back to the last whole word.
    said = c.history.turns[0].assistant
    assert said == spoken_prefix(text, 1000.0, 4000.0, complete=False) == "One two…"


def test_barge_in_only_while_something_is_in_progress() -> None:
    c = core()
    assert c.interrupt(1.0, playing=False) == []
    assert c.interrupt(1.0, playing=True) == [Flush(), BargeIn(), SetState(AgentState.LISTENING)]


def test_user_speech_while_the_answer_plays_out_flushes_it() -> None:
    c = core()
    rid = rid_of(c.ask("hi", 1.0))
    answer(c, rid, "Hello there.", 800)
    assert not c.producing()
    assert c.speech_started(1.5, playing=True) == [Flush(), BargeIn(),
                                                   SetState(AgentState.LISTENING)]


# --- a new turn cutting off the old one ---------------------------------------------------------


def test_a_new_transcript_cuts_off_a_turn_in_progress_without_counting_a_barge_in() -> None:
    c = core()
    first = rid_of(c.ask("first question", 1.0))
    c.audio(first, pcm(500))
    actions = c.transcript("second question", 2.0)
    assert actions[:2] == [Flush(), Cancel(first)]
    assert of(actions, BargeIn) == []
    second = rid_of(actions)
    assert of(actions, Produce) == []  # the lane is still the first turn's until it ends
    assert c.produced(first, "cancelled", "Answer one.") == [End(first), Produce(second),
                                                              AwaitPlayout(first)]
    done = c.output_finished(first, 2.1, flushed=True, heard_ms=0.0)
    assert of(done, TurnDone)[0].interrupted
    assert of(done, SetState) == []  # the second turn is thinking: the state stays


def test_a_new_turn_drops_a_turn_still_waiting_for_the_lane() -> None:
    c = core()
    ann = rid_of(c.say("The oven is hot."))
    waiting = rid_of(c.ask("first", 1.0))
    actions = c.ask("second", 2.0)
    assert Cancel(waiting) not in actions and AwaitPlayout(waiting) in actions
    assert Cancel(ann) in actions  # what is being produced is cut off, as before
    done = c.output_finished(waiting, 2.0, flushed=False)
    assert of(done, TurnDone) == [TurnDone(waiting, "", True, None, count=True)]


# --- announcements ------------------------------------------------------------------------------


def test_an_announcement_queues_behind_a_turn_and_is_not_cut_off_by_the_next_turn() -> None:
    c = core()
    turn = rid_of(c.ask("question", 1.0))
    say = c.say("Dinner is ready.")
    ann = rid_of(say)
    assert of(say, Produce) == []  # one synthesis at a time: it waits for the turn
    c.audio(turn, pcm(200))
    cut = c.ask("another question", 2.0)
    assert Cancel(turn) in cut and Cancel(ann) not in cut
    nxt = rid_of(cut)
    # The announcement keeps its place in the order: it is produced before the new turn.
    assert of(c.produced(turn, "cancelled", "A."), Produce) == [Produce(ann)]
    assert c.audio(ann, pcm(300))[0] == Begin(ann)
    c.synthesis_complete(ann)
    assert of(c.produced(ann, "done"), Produce) == [Produce(nxt)]
    done = c.output_finished(ann, 3.0, flushed=False)
    assert done == [AnnouncementDone(ann, False)]  # the turn is thinking: the state stays


def test_an_announcement_alone_returns_to_idle_when_played() -> None:
    c = core()
    ann = rid_of(c.say("Hello."))
    answer(c, ann, "", 300)
    assert c.output_finished(ann, 1.0, flushed=False) == [
        AnnouncementDone(ann, False), SetState(AgentState.LISTENING, only_from=frozenset({AgentState.SPEAKING}))]


def test_ask_while_an_announcement_is_speaking_waits_for_it() -> None:
    c = core()
    ann = rid_of(c.say("A long announcement."))
    c.audio(ann, pcm(300))
    actions = c.ask("a question", 1.0)
    assert of(actions, Cancel) == [] and of(actions, Flush) == []
    turn = rid_of(actions)
    c.synthesis_complete(ann)
    assert of(c.produced(ann, "done"), Produce) == [Produce(turn)]


def test_ask_while_a_turn_is_speaking_supersedes_it() -> None:
    c = core()
    first = rid_of(c.ask("one", 1.0))
    c.audio(first, pcm(300))
    actions = c.ask("two", 1.5)
    assert actions[:2] == [Flush(), Cancel(first)]
    assert of(actions, NewTurn) == [NewTurn("turn-2", "two", 1.5)]


# --- history --------------------------------------------------------------------------------------


def test_a_failed_synthesis_keeps_what_was_played() -> None:
    c = core()
    rid = rid_of(c.ask("explain", 1.0))
    c.audio(rid, pcm(1000))  # 1 s ≈ 14 characters of the text
    c.produced(rid, "failed", "Alpha beta gamma delta epsilon.")
    done = c.output_finished(rid, 3.0, flushed=False, first_audible=1.5)
    assert of(done, TurnDone)[0].count  # audio was played: the turn counts
    assert c.history.turns[0].assistant == "Alpha beta…"


def test_an_llm_failure_after_spoken_sentences_is_kept_marked_as_cut_off() -> None:
    # The LLM failed after one sentence: synthesis spoke all of it (complete), then the turn failed.
    c = core()
    rid = rid_of(c.ask("tell me a joke", 1.0))
    c.audio(rid, pcm(2500))
    c.synthesis_complete(rid)
    c.produced(rid, "failed", "Why did the microphone go to school? ")
    done = c.output_finished(rid, 4.0, flushed=False, first_audible=1.5)
    assert of(done, TurnDone)[0].count, "an answer was spoken: the turn counts"
    assert c.history.turns[0].assistant == "Why did the microphone go to school?…", (
        "marked cut off like a barge-in, so the model knows it did not answer in full")
    assert c.history.messages("and?")[-2] == {
        "role": "assistant", "content": "Why did the microphone go to school?…"}


def test_a_failed_synthesis_whose_audio_covered_the_text_is_still_marked_cut_off() -> None:
    c = core()
    rid = rid_of(c.ask("explain", 1.0))
    c.audio(rid, pcm(3000))  # 3 s ≈ 42 characters: the estimate covers all the text sent
    c.produced(rid, "failed", "Alpha beta.")
    c.output_finished(rid, 4.0, flushed=False)
    assert c.history.turns[0].assistant == "Alpha beta.…"


def test_a_completed_answer_is_kept_unmarked() -> None:
    c = core()
    rid = rid_of(c.ask("explain", 1.0))
    answer(c, rid, "Alpha beta.", 1000)
    c.output_finished(rid, 3.0, flushed=False)
    assert c.history.turns[0].assistant == "Alpha beta."


def test_voiced_says_whether_any_audio_of_a_response_reached_the_player() -> None:
    c = core()
    rid = rid_of(c.ask("explain", 1.0))
    assert not c.voiced(rid)
    c.audio(rid, pcm(20))
    assert c.voiced(rid) and not c.voiced("turn-99")


def test_a_failed_turn_with_nothing_played_is_not_counted_nor_kept() -> None:
    c = core()
    rid = rid_of(c.ask("explain", 1.0))
    c.produced(rid, "failed", "")
    done = c.output_finished(rid, 1.1, flushed=False)
    assert of(done, TurnDone) == [TurnDone(rid, "", False, None, count=False)]
    assert c.history.turns == ()


def test_a_failed_turn_plays_the_error_earcon_after_what_of_it_was_queued() -> None:
    c = core()
    rid = rid_of(c.ask("explain", 1.0))
    c.audio(rid, pcm(500))
    actions = c.produced(rid, "failed", "Alpha beta.")
    assert actions[:2] == [End(rid), ErrorEarcon()]
    silent = rid_of(c.ask("again", 2.0))
    assert of(c.produced(silent, "failed", ""), ErrorEarcon) == [ErrorEarcon()]  # nothing was said


def test_no_error_earcon_for_a_cut_off_turn_or_a_failed_announcement() -> None:
    c = core()
    rid = rid_of(c.ask("explain", 1.0))
    c.audio(rid, pcm(500))
    c.interrupt(1.2, playing=True)
    assert of(c.produced(rid, "cancelled", "Alpha"), ErrorEarcon) == []
    cut = rid_of(c.ask("again", 2.0))
    c.interrupt(2.1, playing=False)
    assert of(c.produced(cut, "failed", ""), ErrorEarcon) == []  # it failed while being cancelled
    say = rid_of(c.say("Hello."))
    assert of(c.produced(say, "failed"), ErrorEarcon) == []  # `say` reports its own error


def test_history_keeps_the_last_history_turns() -> None:
    c = core(history_turns=2)
    for i in range(3):
        rid = rid_of(c.ask(f"q{i}", float(i)))
        answer(c, rid, f"a{i}", 100)
        c.output_finished(rid, i + 0.5, flushed=False)
    assert [(t.user, t.assistant) for t in c.history.turns] == [("q1", "a1"), ("q2", "a2")]
    assert c.history.messages("q3")[-1] == {"role": "user", "content": "q3"}


def test_late_audio_of_a_cut_off_response_is_dropped() -> None:
    c = core()
    rid = rid_of(c.ask("hi", 1.0))
    c.audio(rid, pcm(100))
    c.speech_started(1.2, playing=True)
    assert c.audio(rid, pcm(100)) == []  # cancelled, the producer has not stopped yet
    c.produced(rid, "cancelled", "Hi.")
    assert c.audio(rid, pcm(100)) == []


def test_spoken_prefix_rules() -> None:
    assert spoken_prefix("Hello world.", 0.0, 1000.0, True) == ""
    assert spoken_prefix("Hello world.", 2000.0, 1000.0, True) == "Hello world."
    assert spoken_prefix("Hello big world.", 500.0, 1000.0, True) == "Hello…"
