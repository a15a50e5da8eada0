"""Objects that claim to equal anything: a check that compared with `==` alone would pass
them, so the check tests use them to prove that every check enforces exact types."""

from __future__ import annotations

import torch


class AlwaysEqualList(list):
    def __eq__(self, other):
        return True

    __hash__ = None


class AlwaysEqualDict(dict):
    def __eq__(self, other):
        return True

    __hash__ = None


class AlwaysEqualStr(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


class AlwaysEqualFloat(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


class AlwaysEqualTensor(torch.Tensor):
    def __eq__(self, other):
        return True
