"""Fixtures shared by the crypto tests: every group the library exports."""

from __future__ import annotations

import pytest

from kmsnode.crypto import groups as groups_module
from kmsnode.crypto.groups import Group


def all_groups() -> list[Group[object]]:
    """Every ``Group`` instance exported by ``kmsnode.crypto.groups`` (new backends join here)."""
    seen: dict[str, Group[object]] = {}
    for name in getattr(groups_module, "__all__", dir(groups_module)):
        obj = getattr(groups_module, name, None)
        if isinstance(obj, Group):
            seen.setdefault(obj.name, obj)
    return list(seen.values())


@pytest.fixture(params=all_groups(), ids=lambda g: g.name)
def group(request: pytest.FixtureRequest) -> Group[object]:
    """Each exported group in turn."""
    return request.param  # type: ignore[no-any-return]
