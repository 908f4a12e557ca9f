"""flash_attention_2 where flash-attn imports and a CUDA device is there; sdpa otherwise, with one
warning per process saying why; every other request unchanged."""
import logging
import sys
import types

import pytest
import torch

from veripo.model import attention


@pytest.fixture
def fresh(monkeypatch):
    """A process that has not checked flash-attn yet, with flash_attn importable or not as a test sets."""
    attention.flash_attention_problem.cache_clear()
    yield monkeypatch
    attention.flash_attention_problem.cache_clear()


def without_flash_attn(monkeypatch):
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # import raises ImportError


def with_flash_attn(monkeypatch):
    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))


def warnings_of(caplog):
    return [r for r in caplog.records if r.name == attention.__name__ and r.levelno == logging.WARNING]


def test_missing_flash_attn_falls_back_to_sdpa_with_one_warning(fresh, caplog):
    without_flash_attn(fresh)
    fresh.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level(logging.WARNING, logger=attention.__name__):
        assert attention.choose("flash_attention_2") == "sdpa"
        assert attention.choose("flash_attention_2") == "sdpa"
        assert attention.choose("flash_attention_2") == "sdpa"
    (warning,) = warnings_of(caplog)
    assert "flash_attention_2 was requested" in warning.getMessage()
    assert "flash_attn does not import (ModuleNotFoundError" in warning.getMessage()
    assert "using sdpa" in warning.getMessage()


def test_no_cuda_falls_back_to_sdpa_naming_the_reason(fresh, caplog):
    with_flash_attn(fresh)
    fresh.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger=attention.__name__):
        assert attention.choose("flash_attention_2") == "sdpa"
    (warning,) = warnings_of(caplog)
    assert "no CUDA device" in warning.getMessage()


def test_a_broken_build_falls_back_too(fresh, caplog):
    def failing_import(name, *args, **kwargs):
        if name == "flash_attn":
            raise OSError("libcudart.so.12: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    real_import = __builtins__["__import__"] if isinstance(__builtins__, dict) else __builtins__.__import__
    fresh.delitem(sys.modules, "flash_attn", raising=False)
    fresh.setattr("builtins.__import__", failing_import)
    with caplog.at_level(logging.WARNING, logger=attention.__name__):
        assert attention.choose("flash_attention_2") == "sdpa"
    assert "OSError: libcudart.so.12" in warnings_of(caplog)[0].getMessage()


def test_flash_attn_with_cuda_is_kept_without_warning(fresh, caplog):
    with_flash_attn(fresh)
    fresh.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level(logging.WARNING, logger=attention.__name__):
        assert attention.choose("flash_attention_2") == "flash_attention_2"
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("requested", [None, "sdpa", "eager"])
def test_other_requests_pass_through_without_checking(fresh, caplog, requested):
    without_flash_attn(fresh)
    fresh.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger=attention.__name__):
        assert attention.choose(requested) == requested
    assert warnings_of(caplog) == []
    assert attention.flash_attention_problem.cache_info().currsize == 0
