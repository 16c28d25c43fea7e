"""distq: distributed programming infrastructure for Python on Redis/Valkey.

Layers, each a package folder; a lower layer never imports a higher one:

1. ``connection``: URLs, the embedded default server, reconnects, scripts;
2. ``codec``: bodies, results and errors as bytes;
3. ``queue``: Disque's job model (addjob, getjob, ackjob, nack, …);
4. ``endpoints``: an :class:`App` and its tasks (``@app.task``), cached
   services (``@app.service``, native or DisTcl's protocol) and actors
   (``@app.actor``, :class:`Node`, :class:`ActorRef`);
5. ``runtime``: the forking pool (:mod:`distq.pool`) and ``distq worker``;
6. ``ops``: the command line.

Start with :func:`connect` (or :func:`connect_async`)::

    import distq
    with distq.connect() as client:          # the embedded server, started on demand
        job_id = client.addjob("emails", {"to": "ada@example.org"})
        [job] = client.getjob("emails", timeout=5)
        client.ackjob(job)
"""

from distq.connection.url import ConnectionSettings as ConnectionSettings
from distq.endpoints.actor import ActorRef as ActorRef
from distq.endpoints.actor import receive as receive
from distq.endpoints.actor import reply as reply
from distq.endpoints.actor import self_ref as self_ref
from distq.endpoints.app import App as App
from distq.endpoints.node import Node as Node
from distq.endpoints.service import Cached as Cached
from distq.endpoints.task import Task as Task
from distq.endpoints.task import TaskHandle as TaskHandle
from distq.endpoints.task import TaskOptions as TaskOptions
from distq.errors import ActorError as ActorError
from distq.errors import ActorNotFound as ActorNotFound
from distq.errors import ActorStopped as ActorStopped
from distq.errors import AuthenticationError as AuthenticationError
from distq.errors import CodecError as CodecError
from distq.errors import ConnectionFailed as ConnectionFailed
from distq.errors import DistqError as DistqError
from distq.errors import EmbeddedServerError as EmbeddedServerError
from distq.errors import InvalidArgument as InvalidArgument
from distq.errors import JobNotFound as JobNotFound
from distq.errors import LeaseLost as LeaseLost
from distq.errors import NameTaken as NameTaken
from distq.errors import NotReplicated as NotReplicated
from distq.errors import OutOfMemory as OutOfMemory
from distq.errors import PayloadTooLarge as PayloadTooLarge
from distq.errors import PermissionDenied as PermissionDenied
from distq.errors import QueueError as QueueError
from distq.errors import QueueFull as QueueFull
from distq.errors import RemoteError as RemoteError
from distq.errors import ServerError as ServerError
from distq.errors import ServerUnavailable as ServerUnavailable
from distq.errors import SoftTimeLimit as SoftTimeLimit
from distq.errors import Stop as Stop
from distq.errors import Timeout as Timeout
from distq.errors import WorkerLost as WorkerLost
from distq.queue.client import AsyncClient as AsyncClient
from distq.queue.client import AsyncPipeline as AsyncPipeline
from distq.queue.client import Client as Client
from distq.queue.client import Pipeline as Pipeline
from distq.queue.client import connect as connect
from distq.queue.client import connect_async as connect_async
from distq.queue.job import Job as Job
from distq.queue.job import JobState as JobState

__version__ = "0.1.0"

__all__ = [
    # Apps and tasks
    "App",
    "Task",
    "TaskHandle",
    "TaskOptions",
    # Services
    "Cached",
    # Actors
    "ActorRef",
    "Node",
    "receive",
    "reply",
    "self_ref",
    # Clients
    "AsyncClient",
    "AsyncPipeline",
    "Client",
    "Pipeline",
    "connect",
    "connect_async",
    # Jobs
    "Job",
    "JobState",
    # Settings
    "ConnectionSettings",
    # Errors
    "ActorError",
    "ActorNotFound",
    "ActorStopped",
    "AuthenticationError",
    "CodecError",
    "ConnectionFailed",
    "DistqError",
    "EmbeddedServerError",
    "InvalidArgument",
    "JobNotFound",
    "LeaseLost",
    "NameTaken",
    "NotReplicated",
    "OutOfMemory",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueueError",
    "QueueFull",
    "RemoteError",
    "ServerError",
    "ServerUnavailable",
    "SoftTimeLimit",
    "Stop",
    "Timeout",
    "WorkerLost",
]
