"""Gateway tests: real aiohttp backends on loopback, the official openai SDK as client."""
