"""The contract suite on the two built-in backends."""

from unibus.testing import ContractSuite


class TestMemoryContract(ContractSuite):
    url = "memory://"


class TestSQLiteContract(ContractSuite):
    url = "sqlite:///{tmp}/bus.db"
    options = {"lease_timeout": 5.0}
