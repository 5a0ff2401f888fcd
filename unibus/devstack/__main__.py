from unibus.devstack.cli import app

app(prog_name="unibus dev")
