"""One script per DVC stage; each ``main()`` reads only its own params sections (see dvc.yaml)."""
