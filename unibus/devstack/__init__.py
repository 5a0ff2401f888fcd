"""``unibus dev``: the five brokers (and moto) and the Redis and PostgreSQL stores as local
processes, without Docker.

    DevStack().up(["kafka"])           # start, wait until it answers, return its status
    DevStack().restart("kafka", kill=True)
    DevStack().down()
"""

from unibus.devstack._errors import DevStackError
from unibus.devstack._stack import BrokerStatus, DevStack, default_home

__all__ = ["BrokerStatus", "DevStack", "DevStackError", "default_home"]
