import click


@click.command("import-orders")
def import_orders_command() -> None:
    """Import an orders CSV."""
