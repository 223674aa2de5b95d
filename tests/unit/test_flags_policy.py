"""The flags annotation's policy split: options slurmlink owns are dropped (and named, with why); options that
would change identity or escape the site's policy fail the pod (FlagNotAllowed); the rest is the site's call."""

from __future__ import annotations

import shlex

import pytest

from slurmlink.core.errors import PodRejected
from slurmlink.slurm.commands.sbatch import argv
from slurmlink.translate.flags import _words, classify_flags, dropped_message, owned_only
from slurmlink.translate.script import build_job
from slurmlink.translate.site import FORBIDDEN_OPTIONS, OWNED_OPTIONS, SiteConfig
from slurmlink.wire.names import dropped_flags, dropped_flags_value

SITE = SiteConfig()


def test_owned_and_forbidden_lists_do_not_overlap_and_are_never_allowed() -> None:
    assert not set(OWNED_OPTIONS) & set(FORBIDDEN_OPTIONS)
    assert not (set(OWNED_OPTIONS) | set(FORBIDDEN_OPTIONS)) & SITE.allowed_options
    for name in ("--job-name", "--output", "--error", "--input", "--chdir", "--comment", "--parsable", "--wait",
                 "--open-mode"):
        assert name in OWNED_OPTIONS
    for name in ("--uid", "--gid", "--export", "--export-file", "--get-user-env", "--wrap", "--container",
                 "--array", "--dependency", "--bb", "--bbf"):
        assert name in FORBIDDEN_OPTIONS


def test_interlinks_usual_flags_keep_what_the_site_allows_and_drop_the_job_name() -> None:
    flags = classify_flags("--partition=cn-ib --job-name=testsl -t 30  --ntasks=1 --nodes=1", SITE)
    assert flags.options == {"--partition": "cn-ib", "--time": "30", "--ntasks": "1", "--nodes": "1"}
    assert flags.dropped == ("--job-name",)


@pytest.mark.parametrize(("text", "dropped"), [
    ("-J name", ("--job-name",)), ("--job-name name --qos=high", ("--job-name",)),
    ("-o out.txt -e err.txt -i in.txt", ("--output", "--error", "--input")), ("-D /scratch", ("--chdir",)),
    ("--comment='my job' --parsable -W", ("--comment", "--parsable", "--wait")),
    ("--open-mode=append --job-name=a --job-name=b", ("--open-mode", "--job-name"))])
def test_owned_options_are_dropped_with_their_values(text: str, dropped: tuple[str, ...]) -> None:
    flags = classify_flags(text, SITE)
    assert flags.dropped == dropped
    assert set(flags.options) <= {"--qos"}


@pytest.mark.parametrize("text", ["--uid=0", "-u 0", "--gid=0", "--export=ALL", "--export-file=/etc/x",
                                  "--get-user-env", "--wrap=id", "--container=/img", "--array=0-9", "-a 1",
                                  "--dependency=afterok:1", "--bb=stage", "--test-only", "--requeue"])
def test_identity_and_escape_options_fail_the_pod_naming_why(text: str) -> None:
    with pytest.raises(PodRejected) as refused:
        classify_flags(f"--job-name=x {text}", SITE)
    assert refused.value.reason == "FlagNotAllowed"
    name = refused.value.message.split("option ")[1].split(" ")[0]
    assert refused.value.message.endswith(FORBIDDEN_OPTIONS[name])


def test_forbidden_stays_forbidden_even_when_a_site_lists_it() -> None:
    site = SiteConfig(allowed_options=SITE.allowed_options | {"--uid", "--job-name"})
    with pytest.raises(PodRejected, match="--uid"):
        classify_flags("--uid=0", site)
    assert classify_flags("--job-name=x", site).dropped == ("--job-name",)


def test_options_outside_the_allow_list_fail_the_pod() -> None:
    for text in ("--signal=B:USR1@60", "--expo=ALL", "--job=x"):  # getopt prefixes are not names we know
        with pytest.raises(PodRejected) as refused:
            classify_flags(text, SITE)
        assert refused.value.reason == "FlagNotAllowed"
        assert "not allowed at this site" in refused.value.message


def test_the_job_keeps_slurmlinks_own_name_output_and_directory() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "annotations": {
        "slurm-job.vk.io/flags": "--job-name=mine -o /tmp/x -D /tmp --qos=high"}},
        "spec": {"containers": [{"name": "c", "image": "img", "command": ["true"]}]}}
    job = build_job(pod, workdir="/jobs/ns-u-1", site=SITE)
    assert job.extra_options == ("--qos=high",)
    args = argv(job)
    assert "--job-name=slurmlink-u-1" in args and "--output=/jobs/ns-u-1/job.out" in args
    assert "--chdir=/jobs/ns-u-1" in args
    assert not any(a.startswith(("--job-name=mine", "--output=/tmp", "--chdir=/tmp")) for a in args)


def test_dropped_message_and_header_round_trip() -> None:
    dropped = ("--job-name", "--output")
    assert owned_only(dropped_flags(dropped_flags_value(dropped))) == list(dropped)
    assert owned_only(dropped_flags("--job-name,--uid,bogus")) == ["--job-name"]  # only names slurmlink owns
    assert owned_only(dropped_flags(None)) == []
    message = dropped_message(dropped)
    assert "--job-name (slurmlink names the job slurmlink-<pod uid>" in message
    assert "--output (" in message and message.startswith("annotation slurm-job.vk.io/flags: dropped ")


@pytest.mark.parametrize(("text", "limits", "mem", "per_cpu"), [
    ("--mem-per-cpu=2000 --ntasks=1", {}, None, "--mem-per-cpu=2000"),  # interLink's docs' usual flags
    ("--mem-per-cpu=2000", {"memory": "1Gi"}, "--mem=1024M", None),  # the pod's own memory wins
    ("--mem-per-cpu=2000 --mem=3G", {}, "--mem=3072M", None),
    ("", {}, "--mem=2048M", None)])
def test_memory_is_either_a_total_or_per_cpu_never_both(text: str, limits: dict, mem: str | None,
                                                        per_cpu: str | None) -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "annotations": {
        "slurm-job.vk.io/flags": text}},
        "spec": {"containers": [{"name": "c", "image": "img", "command": ["true"],
                                 "resources": {"limits": limits}}]}}
    args = argv(build_job(pod, workdir="/jobs/ns-u-1", site=SITE))
    assert [a for a in args if a.startswith("--mem=")] == ([mem] if mem else [])
    assert [a for a in args if a.startswith("--mem-per-cpu")] == ([per_cpu] if per_cpu else [])


@pytest.mark.parametrize("text", [
    "", "   ", "--begin=now+1day", " -p  debug\t--qos=high\r", "--comment=a\x0bb", "--comment=a\xa0b c\u2003d",
    "-t 10 # not a comment", "--comment=$HOME;`id`|x", "--comment='a b'", '--comment="a b" -p x', "--comment=a\\ b",
])
def test_the_words_are_shlexs_with_or_without_quoting(text: str) -> None:
    """Without quotes or backslashes the annotation is split on shlex's blanks only, as shlex splits it."""
    assert _words(text) == shlex.split(text, comments=False)
