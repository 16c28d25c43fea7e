"""One module per library measured by ``bench/peers/run.py``.

Each module is both the app its workers import (its tasks, defined at import
time from ``$BENCH_REDIS_URL``) and the client side the runner drives: it
defines ``PEER``, a :class:`libs.base.Peer` that says how to start the
library's workers and how to enqueue, bulk-enqueue and round-trip one job.
"""

#: name -> module, in the order the run measures them (distq first, the raw
#: redis-py baseline last).
LIBS = {
    "distq": "libs.distq_peer",
    "celery": "libs.celery_peer",
    "rq": "libs.rq_peer",
    "dramatiq": "libs.dramatiq_peer",
    "huey": "libs.huey_peer",
    "arq": "libs.arq_peer",
    "saq": "libs.saq_peer",
    "taskiq": "libs.taskiq_peer",
    "redis-py": "libs.raw_peer",
}
