"""What the server keeps about sessions on disk: the session store (records that outlive
a restart) and the CLI's transcripts."""
