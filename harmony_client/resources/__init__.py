"""The API's resources, each as a sync and an async class sharing how its requests are built."""
