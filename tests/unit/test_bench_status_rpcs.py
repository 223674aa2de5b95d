"""bench/status_rpcs.py reads sdiag's two RPC tables and counts the status queries' RPCs per user (issue 13:
"counted per user so other traffic on the cluster does not blur it"). The text is a real 22.05 sdiag's."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # bench/ is not installed

from bench.status_rpcs import Users, api_rpcs, parse_sdiag, rpc_delta  # noqa: E402

SDIAG_TAIL = """\
Remote Procedure Call statistics by message type
\tREQUEST_PARTITION_INFO                  ( 2009) count:14196  ave_time:177    total_time:2519369
\tREQUEST_JOB_INFO                        ( 2003) count:2854   ave_time:862    total_time:2460501
\tREQUEST_SUBMIT_BATCH_JOB                ( 4003) count:1914   ave_time:1134   total_time:2171443
\tREQUEST_COMPLETE_BATCH_SCRIPT           ( 5018) count:1175   ave_time:791    total_time:929724
\tREQUEST_STATS_INFO                      ( 2035) count:18     ave_time:150    total_time:2712
\tMESSAGE_NODE_REGISTRATION_STATUS        ( 1002) count:4      ave_time:369    total_time:1477

Remote Procedure Call statistics by user
\troot            (       0) count:41884  ave_time:300    total_time:12586021
\tsltest1         (    1001) count:1986   ave_time:1100   total_time:2185282
\tsltest3         (    1003) count:255    ave_time:836    total_time:213424
\tsltest2         (    1002) count:17     ave_time:145    total_time:2467
\tslurm           (   64030) count:16     ave_time:109    total_time:1746

Pending RPC statistics
\tNo pending RPCs
"""
SDIAG = "*******************************************************\nsdiag output at ...\n" + SDIAG_TAIL


def test_both_tables_are_read() -> None:
    counts = parse_sdiag(SDIAG)
    assert counts["type"]["REQUEST_JOB_INFO"] == 2854
    assert counts["type"]["MESSAGE_NODE_REGISTRATION_STATUS"] == 4
    assert counts["user"] == {"root": 41884, "sltest1": 1986, "sltest3": 255, "sltest2": 17, "slurm": 16}


def test_the_status_users_rpcs_leave_out_the_bench_the_submissions_and_slurmd() -> None:
    before = parse_sdiag(SDIAG)
    after = parse_sdiag(SDIAG.replace("count:41884", "count:41907")  # root: 20 of squeue, 3 of slurmd
                         .replace("count:4 ", "count:6 ").replace("count:1175", "count:1176")
                         .replace("count:2854", "count:2864").replace("count:14196", "count:14206")
                         .replace("count:17 ", "count:18 ")  # the bench's sdiag
                         .replace("count:1986", "count:1996"))  # ten submissions
    rpcs = rpc_delta(after, before)
    assert rpcs["node_rpcs"] == {"MESSAGE_NODE_REGISTRATION_STATUS": 2, "REQUEST_COMPLETE_BATCH_SCRIPT": 1}
    assert rpcs["by_user"] == {"root": 23, "sltest1": 10, "sltest2": 1}
    assert api_rpcs(rpcs, Users(status="root", pods="sltest1", bench="sltest2")) == 20
    assert api_rpcs(rpcs, Users(status="sltest3", pods="sltest1", bench="sltest2")) == 0
