package bench

import (
	"math"
	"testing"
	"time"
)

func TestJudge(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	hs := []scVersion{
		{Tag: "fixture", Images: []string{"r/a:1", "r/b:1"}},
		{Tag: "-soak1", Images: []string{"r/a:1-soak1", "r/b:1-soak1"}, Start: at(10), Wrote: at(10.1)},
		{Tag: "-soak2", Images: []string{"r/a:1-soak2", "r/b:1-soak2"}, Start: at(20), Wrote: at(20.1)},
		{Tag: "-soak12", Images: []string{"r/a:1-soak12", "r/b:1-soak12"}, Start: at(30), Wrote: at(30.1)},
	}
	patch := func(v int) string {
		return `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"` + hs[v].Images[0] +
			`"},{"op":"replace","path":"/spec/template/spec/containers/1/image","value":"` + hs[v].Images[1] + `"}]`
	}
	const bound = 5 * time.Second
	for _, c := range []struct {
		name         string
		patch        string
		sent, answer float64
		want         verdict
		version      int
		age          float64
	}{
		{"fixture before any change", patch(0), 1, 1.01, fresh, 0, 0},
		{"fixture just after the first change", patch(0), 10.2, 10.21, fresh, 0, 0.1},
		{"fixture 4.9 s after it was superseded", patch(0), 15, 15.01, fresh, 0, 4.9},
		{"fixture 5.4 s after it was superseded", patch(0), 15.5, 15.51, stale, 0, 5.4},
		{"current version", patch(1), 12, 12.01, fresh, 1, 0},
		{"a version written while the review was in flight", patch(2), 19.95, 20.05, fresh, 2, 0},
		{"a version written after the answer was read", patch(2), 19, 19.01, wrong, 2, 0},
		{"the last version, long after", patch(3), 1000, 1000.01, fresh, 3, 0},
		{"soak12 is not mistaken for soak1", patch(3), 31, 31.01, fresh, 3, 0},
		{"soak1 far too late", patch(1), 40, 40.01, stale, 1, 19.9},
		{"no version's images", `[{"op":"replace","value":"r/a:9"}]`, 12, 12.01, wrong, -1, 0},
		{"half a version", `[{"value":"r/a:1-soak1"}]`, 12, 12.01, wrong, -1, 0},
		{"two versions at once", patch(1) + patch(2), 25, 25.01, wrong, -1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, got, age := judge(hs, at(c.sent), at(c.answer), bound, c.patch)
			if got != c.want || v != c.version || math.Abs(age.Seconds()-c.age) > 1e-6 {
				t.Errorf("judge = version %d, %v, age %.3f s; want version %d, %v, age %.3f s", v, got, age.Seconds(), c.version, c.want, c.age)
			}
		})
	}
}

func TestJudgeNextWriteInFlight(t *testing.T) {
	t0 := time.Now()
	hs := []scVersion{
		{Tag: "fixture", Images: []string{"a:1"}},
		{Tag: "-soak1", Images: []string{"a:1-soak1"}, Start: t0}, // write not returned yet
	}
	if v, got, _ := judge(hs, t0.Add(time.Minute), t0.Add(time.Minute), time.Second, `"a:1"`); got != fresh || v != 0 {
		t.Errorf("judge = %d %v, want 0 fresh (the next write has not returned)", v, got)
	}
}

func TestTQuantile(t *testing.T) {
	// reference values of Student's t, 0.975 quantile
	for _, c := range []struct{ df, want float64 }{
		{1, 12.7062}, {2, 4.3027}, {5, 2.5706}, {10, 2.2281}, {30, 2.0423}, {120, 1.9799}, {1e6, 1.9600},
	} {
		if got := tQuantile975(c.df); math.Abs(got-c.want) > 5e-4 {
			t.Errorf("tQuantile975(%v) = %.4f, want %.4f", c.df, got, c.want)
		}
	}
}

func TestFitSlope(t *testing.T) {
	line := func(n int, a, b float64, noise func(i int) float64) ([]float64, []float64) {
		var x, y []float64
		for i := 0; i < n; i++ {
			xi := float64(i) / 360 // 10 s samples, in hours
			x = append(x, xi)
			y = append(y, a+b*xi+noise(i))
		}
		return x, y
	}
	alternating := func(i int) float64 { return 0.5 * float64(1-2*(i%2)) }
	step := func(i int) float64 {
		if i >= 24 {
			return 1
		}
		return 0
	}
	type fitCase struct {
		name             string
		x, y             []float64
		slope            float64 // NaN: not checked
		loAbove, hiBelow float64 // the interval must lie inside (loAbove, hiBelow)
		minLag1          float64
		notALeak         bool // the lower bound must stay below leakThreshold(window, 1, 1)
	}
	exactX, exactY := line(100, 40, 3, func(int) float64 { return 0 })
	flatX, flatY := line(300, 40, 0, alternating)
	// a 1 MiB step half way through 8 minutes: OLS alone calls it 7.5 MiB/h
	// with a narrow interval; the residuals are autocorrelated, so the
	// interval widens to include 0
	stepX, stepY := line(48, 40, 0, step)
	for _, c := range []fitCase{
		{name: "exact line", x: exactX, y: exactY, slope: 3, loAbove: 2.999, hiBelow: 3.001},
		{name: "flat with alternating noise", x: flatX, y: flatY, slope: math.NaN(), loAbove: -1, hiBelow: 1},
		{name: "a step, not a trend", x: stepX, y: stepY, slope: math.NaN(), loAbove: -1e9, hiBelow: 1e9, minLag1: 0.5, notALeak: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, ok := fitSlope(c.x, c.y)
			if !ok {
				t.Fatal("not ok")
			}
			if !math.IsNaN(c.slope) && math.Abs(f.Slope-c.slope) > 1e-6 {
				t.Errorf("slope %.4f, want %.4f", f.Slope, c.slope)
			}
			if f.Lo <= c.loAbove || f.Hi >= c.hiBelow || f.Lo > f.Slope || f.Hi < f.Slope {
				t.Errorf("interval [%.4f, %.4f] around %.4f, want within (%.4f, %.4f)", f.Lo, f.Hi, f.Slope, c.loAbove, c.hiBelow)
			}
			if f.Lag1 < c.minLag1 {
				t.Errorf("lag-1 autocorrelation %.3f, want at least %.3f", f.Lag1, c.minLag1)
			}
			window := time.Duration((c.x[len(c.x)-1] - c.x[0]) * float64(time.Hour))
			if lim := leakThreshold(window, 1, 1); c.notALeak && f.Lo > lim {
				t.Errorf("a step gave a lower bound of %.2f MiB/h, above %.2f: a soak would call it a leak", f.Lo, lim)
			}
		})
	}
	for _, bad := range [][2][]float64{
		{{1, 2}, {1, 2}},
		{{1, 1, 1}, {1, 2, 3}},
		{{1, 2, 3}, {1, 2}},
	} {
		if _, ok := fitSlope(bad[0], bad[1]); ok {
			t.Errorf("fitSlope(%v, %v) ok, want not", bad[0], bad[1])
		}
	}
}

func TestLeakThreshold(t *testing.T) {
	for _, c := range []struct {
		window time.Duration
		want   float64
	}{
		{0, math.Inf(1)},
		{144 * time.Second, 25},       // a 3-minute run
		{8 * time.Minute, 7.5},        // a 10-minute run
		{55 * time.Minute, 60.0 / 55}, // an hour's run: about the 1 MiB/h target
		{2 * time.Hour, 1},
	} {
		if got := leakThreshold(c.window, 1, 1); math.Abs(got-c.want) > 1e-9 && !(math.IsInf(got, 1) && math.IsInf(c.want, 1)) {
			t.Errorf("leakThreshold(%v) = %v, want %v", c.window, got, c.want)
		}
	}
}

func TestWarmupAndQuarterGrowth(t *testing.T) {
	for _, c := range []struct{ run, want time.Duration }{
		{3 * time.Minute, 36 * time.Second},
		{10 * time.Minute, 2 * time.Minute},
		{25 * time.Minute, 5 * time.Minute},
		{60 * time.Minute, 5 * time.Minute},
	} {
		if got := warmup(c.run); got != c.want {
			t.Errorf("warmup(%v) = %v, want %v", c.run, got, c.want)
		}
	}
	for _, c := range []struct {
		v    []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5, 9}, 0},
		{[]float64{20, 20, 90, 20, 20, 20, 20, 20}, 0}, // a spike in between
		{[]float64{20, 21, 22, 23, 24, 25, 26, 27}, 6},
		{[]float64{30, 30, 29, 28, 27, 26, 25, 25}, -5},
	} {
		if got := quarterGrowth(c.v); got != c.want {
			t.Errorf("quarterGrowth(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}
