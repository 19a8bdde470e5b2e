"""Where frames come from: a camera, a video file or stream, a built-in clip."""
