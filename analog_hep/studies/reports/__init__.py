"""Reports of any record: Markdown tables and PNG plots, read through the record modules."""
