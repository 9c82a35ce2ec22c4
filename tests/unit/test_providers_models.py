"""Model lists, the model → CLI mapping and the @model / @provider directives."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ductor.providers.models import (
    CLAUDE_EFFORTS,
    CODEX_FALLBACK,
    Directives,
    DiscoveredModels,
    ModelInfo,
    efforts_for,
    known_model_ids,
    parse_directives,
    provider_for_model,
)
from ductor.providers.request import Provider

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class Discovery:
    """A stand-in for running `codex app-server`: returns, fails or finds nothing."""

    def __init__(self, *answers: Sequence[ModelInfo] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> Sequence[ModelInfo]:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def codex_models(tmp_path: Path, discovery: Discovery, now: datetime = NOW) -> DiscoveredModels:
    return DiscoveredModels(
        provider=Provider.CODEX,
        cache_file=tmp_path / "codex_models.json",
        discover=discovery,
        fallback=CODEX_FALLBACK,
        clock=lambda: now,
    )


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("opus", Provider.CLAUDE),
        ("sonnet[1m]", Provider.CLAUDE),
        ("Haiku", Provider.CLAUDE),
        ("claude-sonnet-4-5", Provider.CLAUDE),
        ("auto", Provider.GEMINI),
        ("flash-lite", Provider.GEMINI),
        ("gemini-2.5-flash", Provider.GEMINI),
        ("gpt-5.5", Provider.CODEX),
        ("gpt-5.3-codex-spark", Provider.CODEX),
        ("anything-else", Provider.CODEX),
    ],
)
def test_each_model_runs_on_its_cli_and_unknown_models_go_to_codex(
    model: str, provider: Provider
) -> None:
    assert provider_for_model(model) is provider


def test_discovered_gemini_ids_without_the_usual_prefix_map_to_gemini() -> None:
    assert provider_for_model("learnlm-2", gemini_ids=["learnlm-2"]) is Provider.GEMINI


def test_efforts_depend_on_the_model() -> None:
    codex = [ModelInfo("gpt-5.5", efforts=("minimal", "low"))]

    assert efforts_for("opus") == CLAUDE_EFFORTS
    assert efforts_for("gemini-2.5-pro") == ()
    assert efforts_for("gpt-5.5", codex) == ("minimal", "low")
    assert efforts_for("gpt-unknown", codex) == ("low", "medium", "high", "xhigh")


def test_before_any_discovery_the_fallback_list_is_offered(tmp_path: Path) -> None:
    models = codex_models(tmp_path, Discovery())

    assert models.ids()[0] == "gpt-5.5"
    assert models.is_stale()
    assert not (tmp_path / "codex_models.json").exists()


def test_discovered_models_are_cached_and_survive_a_restart(tmp_path: Path) -> None:
    found = [ModelInfo("gpt-6", "GPT-6", efforts=("low", "high"), is_default=True)]
    codex_models(tmp_path, Discovery(found)).refresh()

    after_restart = codex_models(tmp_path, Discovery())

    assert after_restart.models() == tuple(found)
    assert after_restart.last_updated == NOW
    assert not after_restart.is_stale()
    cached = json.loads((tmp_path / "codex_models.json").read_text())
    assert cached["models"][0]["supported_efforts"] == ["low", "high"]


@pytest.mark.parametrize("bad_answer", [RuntimeError("codex not installed"), []])
def test_failed_or_empty_discovery_keeps_the_last_known_models(
    tmp_path: Path, bad_answer: Exception | list[ModelInfo]
) -> None:
    models = codex_models(tmp_path, Discovery([ModelInfo("gpt-6")], bad_answer))
    models.refresh()

    assert models.refresh() == (ModelInfo("gpt-6"),)
    assert codex_models(tmp_path, Discovery()).ids() == ("gpt-6",)


def test_refresh_if_stale_asks_the_cli_again_only_after_a_day(tmp_path: Path) -> None:
    discovery = Discovery([ModelInfo("gpt-6")], [ModelInfo("gpt-7")])
    codex_models(tmp_path, discovery).refresh()

    codex_models(tmp_path, discovery, NOW + timedelta(hours=23)).refresh_if_stale()
    assert discovery.calls == 1
    later = codex_models(tmp_path, discovery, NOW + timedelta(hours=25)).refresh_if_stale()
    assert discovery.calls == 2
    assert later == (ModelInfo("gpt-7"),)


def test_an_unreadable_cache_falls_back_instead_of_failing(tmp_path: Path) -> None:
    (tmp_path / "codex_models.json").write_text("{not json")

    assert codex_models(tmp_path, Discovery()).ids() == tuple(m.id for m in CODEX_FALLBACK)


def test_a_leading_model_directive_picks_model_and_provider() -> None:
    assert parse_directives("@opus fix the bug") == Directives(
        "opus", Provider.CLAUDE, "fix the bug"
    )


def test_a_provider_directive_leaves_the_model_to_the_caller() -> None:
    assert parse_directives("@Codex\nrun the tests") == Directives(
        None, Provider.CODEX, "run the tests"
    )


def test_directives_match_any_case_and_may_come_together() -> None:
    assert parse_directives("@GEMINI @flash hi") == Directives("flash", Provider.GEMINI, "hi")


def test_a_model_directive_wins_over_a_provider_that_does_not_run_it() -> None:
    assert parse_directives("@codex @sonnet hi").provider is Provider.CLAUDE


def test_discovered_models_can_be_named_in_a_directive() -> None:
    known = known_model_ids(["gpt-6-turbo"])

    assert parse_directives("@gpt-6-turbo go", known) == Directives(
        "gpt-6-turbo", Provider.CODEX, "go"
    )


def test_a_directive_alone_leaves_no_text() -> None:
    assert parse_directives("@opus[1m]") == Directives("opus[1m]", Provider.CLAUDE, "")


@pytest.mark.parametrize(
    "text",
    ["email @opus about it", "@alice please review", "@opus, fix it", "no directive", ""],
)
def test_text_without_a_leading_known_directive_is_left_alone(text: str) -> None:
    assert parse_directives(text) == Directives(None, None, text)


def test_parsing_stops_at_an_unknown_name_which_stays_in_the_text() -> None:
    assert parse_directives("@opus @research summarise") == Directives(
        "opus", Provider.CLAUDE, "@research summarise"
    )
