"""ductor.projects: which folder a forum topic or a Matrix room works in."""

from __future__ import annotations

from pathlib import Path

from ductor.config import AgentConfig
from ductor.paths import resolve
from ductor.projects import project_root, root_path
from ductor.sandbox import mounts

HOME = Path("/home/u")


def test_a_topic_is_found_by_name_before_chat_and_topic_before_topic_alone() -> None:
    roots = {"web": "/src/web", "-100:7": "/src/chat-topic", "7": "/src/topic"}

    by_name = project_root(roots, "tg:-100:7", "web", HOME)
    assert by_name is not None and by_name.path == Path("/src/web")
    by_id = project_root(roots, "tg:-100:7", "other name", HOME)
    assert by_id is not None and by_id.path == Path("/src/chat-topic")
    alone = project_root(roots, "tg:-200:7", "", HOME)
    assert alone is not None and (alone.entry, alone.path) == ("7", Path("/src/topic"))


def test_a_private_chat_or_a_group_without_topics_works_in_the_workspace() -> None:
    roots = {"123": "/src/a", "web": "/src/web"}

    assert project_root(roots, "tg:123", "web", HOME) is None
    assert project_root(roots, "tg:-100123", "", HOME) is None
    assert project_root(roots, "ia:main", "web", HOME) is None


def test_a_matrix_room_is_found_by_its_name_or_its_room_id() -> None:
    roots = {"!abc:example.org": "/src/room", "Design": "/src/design"}

    by_id = project_root(roots, "mx:!abc:example.org", "", HOME)
    by_name = project_root(roots, "mx:!zzz:example.org", "Design", HOME)

    assert by_id is not None and by_id.path == Path("/src/room")
    assert by_name is not None and by_name.path == Path("/src/design")


def test_a_tilde_is_the_accounts_home() -> None:
    assert root_path("~/src/x", HOME) == HOME / "src" / "x"
    assert root_path("~", HOME) == HOME
    assert root_path("/srv/y", HOME) == Path("/srv/y")


def test_a_missing_folder_is_reported_not_replaced(tmp_path: Path) -> None:
    root = project_root({"web": str(tmp_path / "gone")}, "tg:-1:2", "web", HOME)

    assert root is not None and not root.exists
    (tmp_path / "gone").mkdir()
    assert root.exists


def test_the_sandbox_binds_the_same_folder_the_cli_runs_in(tmp_path: Path) -> None:
    env = {
        "DUCTOR_CONFIG_DIR": str(tmp_path / "config"),
        "DUCTOR_STATE_DIR": str(tmp_path / "state"),
        "DUCTOR_RUNTIME_DIR": str(tmp_path / "runtime"),
        "DUCTOR_CACHE_DIR": str(tmp_path / "cache"),
        "HOME": str(tmp_path / "home"),
    }
    config = AgentConfig(project_roots={"web": "~/src/web"})
    runs_in = project_root(config.project_roots, "tg:-1:2", "web", tmp_path / "home")

    bound = [m.path for m in mounts(resolve(env=env), "main", config, env)]

    assert runs_in is not None and runs_in.path in bound
