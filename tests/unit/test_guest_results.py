"""The host reads guest results from the console through parse_result_lines."""
from vmsim.harness.results import parse_result_lines

CONSOLE = (
    "[    0.512000] Run /init as init process\r\n"
    "@vmsim event=init-start\r\n"
    "@vmsim test=busy result=pass ms=2000 batches=41\r\n"
    "[    1.000000] some driver said @vmsim test=fake result=pass\r\n"
    "@vmsim test=aes result=fail what=ct expected=a=b\n"
    "@vmsimulated test=nope\n"
    "  @vmsim event=done exit=3 stray-word\n"
)


def test_only_lines_that_start_with_the_marker_are_results():
    results = parse_result_lines(CONSOLE)
    assert [r.get("test") or r.get("event") for r in results] == [
        "init-start", "busy", "aes", "done"]


def test_values_are_strings_split_at_the_first_equals_sign():
    busy, aes = parse_result_lines(CONSOLE)[1:3]
    assert busy == {"test": "busy", "result": "pass", "ms": "2000", "batches": "41"}
    assert aes["expected"] == "a=b"


def test_carriage_returns_and_words_without_equals_are_dropped():
    done = parse_result_lines(CONSOLE)[-1]
    assert done == {"event": "done", "exit": "3"}


def test_no_marker_means_no_results():
    assert parse_result_lines("") == []
    assert parse_result_lines("Kernel panic - not syncing: VFS\n") == []
