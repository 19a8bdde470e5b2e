"""The run: the engine that mattes each frame, the threads and queues around it, the live
governor and the figures."""
