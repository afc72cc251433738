package bench

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// The pure parts of `e2e soak` (soak.go): which ServerConfig version an
// answer applied and whether it was within the staleness bound, and the
// least-squares slope of the RSS samples with its confidence interval.

// scVersion is one write of a ServerConfig: its images, when the write was
// sent and when it returned. The first version (the fixture's) has zero
// times: current since before the soak.
type scVersion struct {
	Tag          string
	Images       []string
	Start, Wrote time.Time
}

// scHistory is the versions of one ServerConfig in write order; the
// changer appends (before it writes, so that no answer can carry images
// the history does not know), the answer checks read.
type scHistory struct {
	mu       sync.Mutex
	versions []scVersion
}

func (h *scHistory) add(v scVersion) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.versions = append(h.versions, v)
	return len(h.versions) - 1
}

func (h *scHistory) wrote(i int, t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.versions[i].Wrote = t
}

func (h *scHistory) snapshot() []scVersion {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]scVersion(nil), h.versions...)
}

// verdict of one answer against a history.
type verdict int

const (
	fresh verdict = iota // a version current at some time in [sent-bound, answered]
	stale                // a known version, superseded more than bound before the review was sent
	wrong                // the images of no version (or of several)
)

func (v verdict) String() string {
	return [...]string{"fresh", "stale", "wrong"}[v]
}

// appliedVersion is the index of the one version of hs whose every image
// is in patch as a JSON string; -1 when none or several are.
func appliedVersion(hs []scVersion, patch string) int {
	found := -1
	for i, v := range hs {
		all := len(v.Images) > 0
		for _, img := range v.Images {
			if !strings.Contains(patch, strconv.Quote(img)) {
				all = false
				break
			}
		}
		if all {
			if found >= 0 {
				return -1
			}
			found = i
		}
	}
	return found
}

// judge classifies an answer sent at sent and read at answered. Version k
// was current from when its write was sent (Start) until the next
// version's write returned (Wrote; the generous end of both uncertain
// edges); the answer is fresh when that interval meets
// [sent-bound, answered]: no older than bound when the review was sent,
// and possibly newer than the review itself. Returns the version's index
// (-1 for wrong) and how long before sent it had been superseded (0 when
// it had not been, or wrong).
func judge(hs []scVersion, sent, answered time.Time, bound time.Duration, patch string) (int, verdict, time.Duration) {
	k := appliedVersion(hs, patch)
	if k < 0 {
		return -1, wrong, 0
	}
	if !hs[k].Start.IsZero() && hs[k].Start.After(answered) {
		return k, wrong, 0 // written after the answer was read: impossible
	}
	if k == len(hs)-1 {
		return k, fresh, 0
	}
	end := hs[k+1].Wrote
	if end.IsZero() {
		return k, fresh, 0 // the next write has not returned yet
	}
	age := max(sent.Sub(end), 0)
	if age > bound {
		return k, stale, age
	}
	return k, fresh, age
}

// slopeFit is a least-squares line through (x, y) with a 95% confidence
// interval for its slope.
type slopeFit struct {
	N         int     // points
	Slope     float64 // y units per x unit
	Lo, Hi    float64 // 95% confidence interval of Slope
	Intercept float64
	// Lag1 is the lag-1 autocorrelation of the residuals and NEff the
	// effective sample size n(1-r)/(1+r) the interval is computed with:
	// samples 10 s apart are not independent, and an interval that treats
	// them so is too narrow
	Lag1, NEff float64
}

// fitSlope fits y = a + b x by ordinary least squares. The slope's
// standard error is widened for autocorrelated residuals (AR(1): the
// variance times (1+r)/(1-r), r the lag-1 autocorrelation clamped to
// [0, 0.95]) and the interval uses Student's t with NEff-2 degrees of
// freedom. Fewer than 3 points (or all x equal): ok false.
func fitSlope(x, y []float64) (slopeFit, bool) {
	n := len(x)
	if n < 3 || len(y) != n {
		return slopeFit{N: n}, false
	}
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(n)
	my /= float64(n)
	var sxx, sxy float64
	for i := range x {
		sxx += (x[i] - mx) * (x[i] - mx)
		sxy += (x[i] - mx) * (y[i] - my)
	}
	if sxx == 0 {
		return slopeFit{N: n}, false
	}
	b := sxy / sxx
	a := my - b*mx
	res := make([]float64, n)
	var sse float64
	for i := range x {
		res[i] = y[i] - a - b*x[i]
		sse += res[i] * res[i]
	}
	var num float64
	for i := 1; i < n; i++ {
		num += res[i] * res[i-1]
	}
	r := 0.0
	if sse > 0 {
		r = num / sse
	}
	r = math.Max(0, math.Min(r, 0.95))
	neff := float64(n) * (1 - r) / (1 + r)
	df := math.Max(neff-2, 1)
	se := math.Sqrt(sse/float64(n-2)/sxx) * math.Sqrt((1+r)/(1-r))
	t := tQuantile975(df)
	return slopeFit{N: n, Slope: b, Lo: b - t*se, Hi: b + t*se, Intercept: a, Lag1: r, NEff: neff}, true
}

// tQuantile975 is the 0.975 quantile of Student's t with df degrees of
// freedom (df > 0).
func tQuantile975(df float64) float64 {
	return distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}.Quantile(0.975)
}

// warmup is how much of a run of length d the analysis skips: 20% of it
// or 5 minutes, whichever is less.
func warmup(d time.Duration) time.Duration {
	return min(d/5, 5*time.Minute)
}

// leakThreshold is the slope (MiB/h) above which the lower end of the
// RSS slope's interval fails a soak whose analysed window is window long:
// maxSlope, or the slope that grows by allowance MiB over the window,
// whichever is more. A fixed MiB/h figure alone is unsound for short runs:
// one lasting step (an allocator arena, a pool filling once) of 1 MiB in an
// 8-minute window is a slope of 7.5 MiB/h, and no interval can tell a step
// from a trend inside one window. Over an hour's window the two limits meet.
func leakThreshold(window time.Duration, maxSlope, allowance float64) float64 {
	h := window.Hours()
	if h <= 0 {
		return math.Inf(1)
	}
	return math.Max(maxSlope, allowance/h)
}

// quarterGrowth is the median of the last quarter of v minus the median of
// its first quarter (0 for fewer than 4 values): a count that drifts up
// (descriptors, threads) shows, a spike in between does not.
func quarterGrowth(v []float64) float64 {
	q := len(v) / 4
	if q == 0 {
		return 0
	}
	return median(v[len(v)-q:]) - median(v[:q])
}
