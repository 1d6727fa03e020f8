import click


@click.command("demo")
def demo_command() -> None:
    """Build a demo craft shop and serve it."""
