"""The command line: commands, exit codes, and text or JSON rendering."""
