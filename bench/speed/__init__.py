"""Speed: loss timing, the speed suite, baseline checks, the interleaved gate and its worker, references."""
