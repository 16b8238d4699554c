-- Binary COPY into window_resolution, every column in table order (engine.RESOLUTION_TYPES).
COPY window_resolution FROM STDIN (FORMAT BINARY)
