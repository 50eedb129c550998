/* Float benchmark: the Computer Language Benchmarks Game n-body (the plain C
 * program's algorithm), in double precision. Simulates the Jovian planets for
 * argv[1] steps of 0.01 (default 5000000) and prints the energy before and after
 * with "%.9f" (for 1000 steps: -0.169075164 and -0.169087605). Bodies are structs
 * in memory updated in place (f64.load/f64.store), with sqrt and a division per
 * pair. Only +, -, *, / and sqrt, in a fixed order, so the output is the same
 * natively and in WebAssembly. Natively, compare with gcc -O2 -fno-math-errno: with
 * errno-setting sqrt, gcc -O2 runs ~2x slower (f64.sqrt never sets errno). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define PI 3.141592653589793
#define SOLAR_MASS (4 * PI * PI)
#define DAYS_PER_YEAR 365.24
#define NBODIES 5

struct planet {
    double x, y, z;
    double vx, vy, vz;
    double mass;
};

static struct planet bodies[NBODIES] = {
    {0, 0, 0, 0, 0, 0, SOLAR_MASS}, /* sun */
    {4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01, /* jupiter */
     1.66007664274403694e-03 * DAYS_PER_YEAR, 7.69901118419740425e-03 * DAYS_PER_YEAR,
     -6.90460016972063023e-05 * DAYS_PER_YEAR, 9.54791938424326609e-04 * SOLAR_MASS},
    {8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01, /* saturn */
     -2.76742510726862411e-03 * DAYS_PER_YEAR, 4.99852801234917238e-03 * DAYS_PER_YEAR,
     2.30417297573763929e-05 * DAYS_PER_YEAR, 2.85885980666130812e-04 * SOLAR_MASS},
    {1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01, /* uranus */
     2.96460137564761618e-03 * DAYS_PER_YEAR, 2.37847173959480950e-03 * DAYS_PER_YEAR,
     -2.96589568540237556e-05 * DAYS_PER_YEAR, 4.36624404335156298e-05 * SOLAR_MASS},
    {1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01, /* neptune */
     2.68067772490389322e-03 * DAYS_PER_YEAR, 1.62824170038242295e-03 * DAYS_PER_YEAR,
     -9.51592254519715870e-05 * DAYS_PER_YEAR, 5.15138902046611451e-05 * SOLAR_MASS},
};

__attribute__((noinline)) static void advance(int nbodies, struct planet *b, double dt) {
    for (int i = 0; i < nbodies; i++) {
        struct planet *bi = &b[i];
        for (int j = i + 1; j < nbodies; j++) {
            struct planet *bj = &b[j];
            double dx = bi->x - bj->x;
            double dy = bi->y - bj->y;
            double dz = bi->z - bj->z;
            double distance = sqrt(dx * dx + dy * dy + dz * dz);
            double mag = dt / (distance * distance * distance);
            bi->vx -= dx * bj->mass * mag;
            bi->vy -= dy * bj->mass * mag;
            bi->vz -= dz * bj->mass * mag;
            bj->vx += dx * bi->mass * mag;
            bj->vy += dy * bi->mass * mag;
            bj->vz += dz * bi->mass * mag;
        }
    }
    for (int i = 0; i < nbodies; i++) {
        struct planet *bi = &b[i];
        bi->x += dt * bi->vx;
        bi->y += dt * bi->vy;
        bi->z += dt * bi->vz;
    }
}

static double energy(int nbodies, const struct planet *b) {
    double e = 0.0;
    for (int i = 0; i < nbodies; i++) {
        const struct planet *bi = &b[i];
        e += 0.5 * bi->mass * (bi->vx * bi->vx + bi->vy * bi->vy + bi->vz * bi->vz);
        for (int j = i + 1; j < nbodies; j++) {
            const struct planet *bj = &b[j];
            double dx = bi->x - bj->x;
            double dy = bi->y - bj->y;
            double dz = bi->z - bj->z;
            double distance = sqrt(dx * dx + dy * dy + dz * dz);
            e -= (bi->mass * bj->mass) / distance;
        }
    }
    return e;
}

static void offset_momentum(int nbodies, struct planet *b) {
    double px = 0.0, py = 0.0, pz = 0.0;
    for (int i = 0; i < nbodies; i++) {
        px += b[i].vx * b[i].mass;
        py += b[i].vy * b[i].mass;
        pz += b[i].vz * b[i].mass;
    }
    b[0].vx = -px / SOLAR_MASS;
    b[0].vy = -py / SOLAR_MASS;
    b[0].vz = -pz / SOLAR_MASS;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 5000000;
    offset_momentum(NBODIES, bodies);
    printf("%.9f\n", energy(NBODIES, bodies));
    for (long i = 0; i < n; i++) advance(NBODIES, bodies, 0.01);
    printf("%.9f\n", energy(NBODIES, bodies));
    return 0;
}
