"""Every path typed into the web UI stays inside the workspace, judged on the resolved path."""

import pytest

from glmtune.errors import ConfigError
from glmtune.webui.workspace import OutsideWorkspaceError, Workspace


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    (root / "inside").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return Workspace.at(root)


@pytest.mark.parametrize("text", ["../x", "inside/../../x", "/etc", "/tmp", "..", "inside/../../ws-sibling"])
def test_paths_that_leave_the_workspace_are_refused(workspace, text):
    with pytest.raises(OutsideWorkspaceError, match="outside the workspace"):
        workspace.path(text, "output folder")


def test_a_sibling_folder_sharing_the_name_prefix_is_outside(workspace, tmp_path):
    (tmp_path / "ws-evil").mkdir()
    with pytest.raises(OutsideWorkspaceError):
        workspace.path(str(tmp_path / "ws-evil"), "model")


def test_a_symlink_pointing_outside_is_refused_even_below_it(workspace, tmp_path):
    (workspace.root / "link").symlink_to(tmp_path / "outside")
    for text in ("link", "link/new-folder", str(workspace.root / "link")):
        with pytest.raises(OutsideWorkspaceError):
            workspace.path(text, "model")


def test_paths_inside_resolve_to_absolute_paths(workspace):
    (workspace.root / "inner-link").symlink_to(workspace.root / "inside")
    assert workspace.path("inside", "x", must_exist=True) == workspace.root / "inside"
    assert workspace.path("inside/../new", "x") == workspace.root / "new"
    assert workspace.path(str(workspace.root / "inside"), "x") == workspace.root / "inside"
    assert workspace.path("inner-link", "x") == workspace.root / "inside"
    assert workspace.path("~/x", "x") == workspace.root / "~" / "x"  # no home expansion


@pytest.mark.parametrize("text", ["", "   ", "a\0b"])
def test_empty_and_nul_paths_are_refused(workspace, text):
    with pytest.raises(ConfigError):
        workspace.path(text, "model")


def test_must_exist_names_the_field(workspace):
    with pytest.raises(ConfigError, match="adapter: 'missing' does not exist"):
        workspace.path("missing", "adapter", must_exist=True)
    assert workspace.optional_path("", "adapter") is None
