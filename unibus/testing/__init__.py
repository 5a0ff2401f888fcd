"""The unibus contract suite: one set of tests every backend passes against its broker.

Third-party backends import it::

    from unibus.testing import ContractSuite

    class TestMyBrokerContract(ContractSuite):
        url = "mybroker://127.0.0.1:1234"
        broker = "mybroker"  # optional: a `unibus dev` name for the reconnect test

Tests are driven by the backend's capability declaration: a capability it claims is
exercised; one it lacks is checked to be refused with a CapabilityError. Nothing is skipped.
"""

from unibus.testing._base import ContractBase
from unibus.testing._groups import GroupContract
from unibus.testing._lifecycle import LifecycleContract
from unibus.testing._messaging import MessagingContract
from unibus.testing._refusals import RefusalContract
from unibus.testing._replay import ReplayContract
from unibus.testing._settlement import SettlementContract

__all__ = ["ContractBase", "ContractSuite"]


class ContractSuite(
    MessagingContract,
    SettlementContract,
    GroupContract,
    ReplayContract,
    LifecycleContract,
    RefusalContract,
):
    """Every contract test. Subclass it as ``Test<Backend>Contract`` and set ``url``."""
