/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) and the Box-Muller map
 * of minirso.random, in C that is also CUDA C: the preamble of the elementwise kernels (elementwise.py), and
 * built by the host C compiler in tests/kernels/test_philox.py against minirso.random, the reference.  The
 * constants below are minirso.random's PHILOX_M0 ... PHILOX_W1 (that test reads them from this file). */
#ifndef MINIRSO_PHILOX_CUH
#define MINIRSO_PHILOX_CUH

#if defined(__CUDACC_RTC__) || defined(__HIPCC_RTC__)
#define MINIRSO_FN __device__ __forceinline__
#else
#define MINIRSO_FN static inline
#endif

#define MINIRSO_PHILOX_M0 0xD2511F53ull  /* multipliers (Salmon et al. 2011, Table 2) */
#define MINIRSO_PHILOX_M1 0xCD9E8D57ull
#define MINIRSO_PHILOX_W0 0x9E3779B9u    /* Weyl key increments (golden ratio, sqrt(3) - 1) */
#define MINIRSO_PHILOX_W1 0xBB67AE85u

/* Ten rounds on the counter c with key (k0, k1): minirso.random.philox4x32. */
MINIRSO_FN void minirso_philox4x32_10(unsigned int c[4], unsigned int k0, unsigned int k1)
{
    for (int r = 0; r < 10; ++r) {
        unsigned long long p0 = (unsigned long long)c[0] * MINIRSO_PHILOX_M0;  /* 32 x 32 -> 64 bits */
        unsigned long long p1 = (unsigned long long)c[2] * MINIRSO_PHILOX_M1;
        unsigned int hi0 = (unsigned int)(p0 >> 32), lo0 = (unsigned int)p0;
        unsigned int hi1 = (unsigned int)(p1 >> 32), lo1 = (unsigned int)p1;
        c[0] = hi1 ^ c[1] ^ k0;
        c[1] = lo1;
        c[2] = hi0 ^ c[3] ^ k1;
        c[3] = lo0;
        k0 += MINIRSO_PHILOX_W0;  /* Weyl key schedule, wraps mod 2^32 */
        k1 += MINIRSO_PHILOX_W1;
    }
}

/* Word w of the (seed, stream) sequence, minirso.random.random_bits: block w / 4 is the counter
 * (low, high, stream low, stream high). */
MINIRSO_FN unsigned int minirso_word(unsigned long long seed, unsigned long long stream, unsigned long long w)
{
    unsigned long long block = w >> 2;
    unsigned int c[4] = {(unsigned int)block, (unsigned int)(block >> 32),
                         (unsigned int)stream, (unsigned int)(stream >> 32)};
    minirso_philox4x32_10(c, (unsigned int)seed, (unsigned int)(seed >> 32));
    return c[w & 3];
}

/* Normal number j, minirso.random.normal: Box-Muller (cosine half) of words 2j and 2j + 1, i.e. words 0,1 or
 * 2,3 of block j / 2. */
MINIRSO_FN double minirso_normal(unsigned long long seed, unsigned long long stream, unsigned long long j)
{
    unsigned long long block = j >> 1;
    unsigned int c[4] = {(unsigned int)block, (unsigned int)(block >> 32),
                         (unsigned int)stream, (unsigned int)(stream >> 32)};
    minirso_philox4x32_10(c, (unsigned int)seed, (unsigned int)(seed >> 32));
    unsigned int b1 = (j & 1) ? c[2] : c[0];
    unsigned int b2 = (j & 1) ? c[3] : c[1];
    double u1 = ((double)b1 + 0.5) * (1.0 / 4294967296.0);  /* uniform on (0, 1), as minirso.random.uniform */
    double u2 = ((double)b2 + 0.5) * (1.0 / 4294967296.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);  /* 2 pi in double, as 2.0 * numpy.pi */
}

#endif /* MINIRSO_PHILOX_CUH */
