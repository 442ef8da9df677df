"""dist: a process without a process group is rank 0 of 1; rank-0 gating."""

from __future__ import annotations

from trackcfg.runner.dist import all_gather_object, get_dist_info, is_main_process, master_only


def test_without_a_process_group_this_is_rank_0_of_1() -> None:
    assert get_dist_info() == (0, 1)
    assert is_main_process()
    assert all_gather_object({"a": 1}) == [{"a": 1}]


def test_master_only_runs_on_rank_0() -> None:
    @master_only
    def double(x: int) -> int:
        return 2 * x

    assert double(4) == 8
