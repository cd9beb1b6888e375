"""The README's "Basic Data Processing" example, with a real ``process_function``.

Run: ``python examples/basic_processing.py``
"""

import asyncio

import sabot


def process_function(item: int) -> int:
    """A small CPU-bound step: the sum of the digits of item**3."""
    return sum(int(d) for d in str(item ** 3))


async def main() -> None:
    # Create launcher (auto-detects mode)
    launcher = sabot.create_composable_launcher()

    # Start processing engine
    await launcher.start()

    # Process data
    data = list(range(1000))
    results = await launcher.process_data(data, process_function)

    print(f"Processed {len(results)} items")
    assert results == [process_function(x) for x in data]
    await launcher.stop()


if __name__ == "__main__":
    asyncio.run(main())
