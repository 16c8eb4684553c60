package api

import (
	"container/list"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// errRateLimited is the cause of every 429 the limits below answer; ToHTTP
// maps it to the code "rate_limited" (it is of errdefs' ResourceExhausted
// class too). A Retry-After header goes with it.
var errRateLimited = errdefs.ErrResourceExhausted.WithMessage("rate limited")

// maxLimiterKeys bounds each limiter map: past it the least recently used key is dropped.
const maxLimiterKeys = 10000

// keyedLimiters is one token bucket per key (a client address or a session),
// least recently used first out. A bucket unused for as long as it takes to
// refill is full, the same as a new one, so it is dropped: the map holds
// only keys that are being limited, and never more than max.
type keyedLimiters struct {
	r    Rate
	max  int
	idle time.Duration // time to refill a bucket from empty

	mu    sync.Mutex
	items map[string]*list.Element
	lru   list.List // of *keyedLimiter, most recently used at the front
}

type keyedLimiter struct {
	key  string
	lim  *rate.Limiter
	last time.Time
}

// newKeyedLimiters returns nil, which allows everything, for a Rate that is off.
func newKeyedLimiters(r Rate, max int) *keyedLimiters {
	if r.Off() {
		return nil
	}
	refill := time.Duration(float64(r.burst()) / float64(r.limit()) * float64(time.Second))
	return &keyedLimiters{r: r, max: max, idle: refill + time.Second, items: map[string]*list.Element{}}
}

// take spends one token of key's bucket; when there is none it spends
// nothing and returns how long until there is one.
func (k *keyedLimiters) take(key string, now time.Time) (wait time.Duration) {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for back := k.lru.Back(); back != nil && now.Sub(back.Value.(*keyedLimiter).last) > k.idle; back = k.lru.Back() {
		k.remove(back)
	}
	el := k.items[key]
	if el == nil {
		el = k.lru.PushFront(&keyedLimiter{key: key, lim: rate.NewLimiter(k.r.limit(), k.r.burst())})
		k.items[key] = el
		for k.lru.Len() > k.max {
			k.remove(k.lru.Back())
		}
	} else {
		k.lru.MoveToFront(el)
	}
	kl := el.Value.(*keyedLimiter)
	kl.last = now
	res := kl.lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Hour
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// blocked is how long until key's bucket has a token, spending none (0:
// it has one now).
func (k *keyedLimiters) blocked(key string, now time.Time) time.Duration {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	el := k.items[key]
	if el == nil {
		return 0
	}
	lim := el.Value.(*keyedLimiter).lim
	if tokens := lim.TokensAt(now); tokens < 1 {
		return time.Duration((1 - tokens) / float64(lim.Limit()) * float64(time.Second))
	}
	return 0
}

func (k *keyedLimiters) remove(el *list.Element) {
	delete(k.items, el.Value.(*keyedLimiter).key)
	k.lru.Remove(el)
}

// len is the number of keys held (for tests).
func (k *keyedLimiters) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lru.Len()
}

// sessionSlots counts the runs in flight per session; a session's entry
// goes when its count drops to zero.
type sessionSlots struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func (s *sessionSlots) acquire(id string) bool {
	if s.max <= 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[id] >= s.max {
		return false
	}
	s.n[id]++
	return true
}

func (s *sessionSlots) release(id string) {
	if s.max <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[id]--; s.n[id] <= 0 {
		delete(s.n, id)
	}
}

// Kinds of run, for the per-session limits (routes.go says which route is which).
const (
	runExec    = "exec"    // execute and shell: ExecRate
	runInstall = "install" // install: InstallRate
)

// limits are the request rate limits and the bound on concurrent runs. Per
// client (address) they apply before the handler runs; per session they
// apply when the handler names the session with setSession.
type limits struct {
	create    *keyedLimiters // creates per client
	clientRun *keyedLimiters // executes, shells and installs per client
	exec      *keyedLimiters // executes and shells per session
	install   *keyedLimiters // installs per session
	lookup    *keyedLimiters // session lookups per client
	missed    *keyedLimiters // requests for a session that is not there, per client
	termOpen  *keyedLimiters // terminal opens per session
	slots     sessionSlots
	terminals sessionSlots // terminals open per session
	opt       Options
	onLimited func(limit string) // counts refusals for /metrics
	now       func() time.Time
}

func newLimits(opt Options, onLimited func(string)) *limits {
	return &limits{
		create:    newKeyedLimiters(opt.CreateRate, maxLimiterKeys),
		clientRun: newKeyedLimiters(opt.ClientExecRate, maxLimiterKeys),
		exec:      newKeyedLimiters(opt.ExecRate, maxLimiterKeys),
		install:   newKeyedLimiters(opt.InstallRate, maxLimiterKeys),
		lookup:    newKeyedLimiters(opt.LookupRate, maxLimiterKeys),
		missed:    newKeyedLimiters(opt.LookupRate, maxLimiterKeys),
		termOpen:  newKeyedLimiters(opt.TerminalRate, maxLimiterKeys),
		slots:     sessionSlots{max: opt.MaxConcurrentExecs, n: map[string]int{}},
		terminals: sessionSlots{max: opt.MaxTerminals, n: map[string]int{}},
		opt:       opt,
		onLimited: onLimited,
		now:       time.Now,
	}
}

// Context keys of the limits.
const (
	limitsKey = "servcraft.limits"  // *limits, on routes with per-session limits
	kindKey   = "servcraft.runKind" // runExec or runInstall
	slotKey   = "servcraft.slot"    // sessionId whose run slot this request holds
)

// limitCreates applies the per-client rate of session creates.
func (l *limits) limitCreates(c *gin.Context) {
	client := clientKey(c.ClientIP())
	if l.refuse(c, l.create.take(client, l.now()), "create",
		"client %s: more than %s session creates", client, l.opt.CreateRate.human()) {
		return
	}
	c.Next()
}

// limitLookups applies the per-client rate of session lookups (GET
// container, files), which bounds how fast a client can guess sessionIds.
func (l *limits) limitLookups(c *gin.Context) {
	client := clientKey(c.ClientIP())
	if l.refuse(c, l.lookup.take(client, l.now()), "lookup",
		"client %s: more than %s session lookups", client, l.opt.LookupRate.human()) {
		return
	}
	c.Next()
}

// limitMisses bounds how fast one client can guess sessionIds on the
// routes that name a session but are not lookups (PATCH and DELETE
// container, sync, processes, logs, previews): each answer that the
// session (or process) is not there spends one
// of the client's LookupRate tokens, and with none left every such request
// of the client is refused, whether the session it names is there or not,
// so that a refusal tells nothing. Requests for live sessions spend
// nothing: a page's many preview requests are not limited.
func (l *limits) limitMisses(c *gin.Context) {
	client := clientKey(c.ClientIP())
	now := l.now()
	if l.refuse(c, l.missed.blocked(client, now), "lookup",
		"client %s: more than %s requests for sessions that are not there", client, l.opt.LookupRate.human()) {
		return
	}
	c.Next()
	if missedSession(c) {
		l.missed.take(client, now)
	}
}

// sessionMissKey marks a preview answered "No such session" (a 404 of the
// user's own server is no miss).
const sessionMissKey = "servcraft.sessionMiss"

// missedSession reports whether c was answered 404 for what it names (the
// session, or a process of it): errorMiddleware renders the error after
// the chain, so it is read from c's errors.
func missedSession(c *gin.Context) bool {
	if c.GetBool(sessionMissKey) {
		return true
	}
	if len(c.Errors) == 0 {
		return false
	}
	status, _ := ToHTTP(c.Errors.Last().Err)
	return status == http.StatusNotFound
}

// limitTerminals applies the per-session rate of terminal opens and holds
// one of the session's MaxTerminals slots while the terminal is open. A
// request without a valid sessionId is left to the handler to refuse.
func (l *limits) limitTerminals(c *gin.Context) {
	id := c.Query("sessionId")
	if validSessionID(id) != nil {
		c.Next()
		return
	}
	if l.refuse(c, l.termOpen.take(id, l.now()), "terminal_open", "session %q: more than %s terminal opens", id, l.opt.TerminalRate.human()) {
		return
	}
	if !l.terminals.acquire(id) {
		l.refuse(c, time.Second, "terminals", "session %q: %d terminals open already", id, l.opt.MaxTerminals)
		return
	}
	defer l.terminals.release(id)
	c.Next()
}

// limitRuns applies the per-client rate of runs (execute, shell, install),
// readies the per-session limits of kind for setSession, and frees the
// request's run slot when it ends.
func (l *limits) limitRuns(kind string) gin.HandlerFunc {
	return func(c *gin.Context) {
		client := clientKey(c.ClientIP())
		if l.refuse(c, l.clientRun.take(client, l.now()), "client_exec",
			"client %s: more than %s runs (execute, shell, install)", client, l.opt.ClientExecRate.human()) {
			return
		}
		c.Set(limitsKey, l)
		c.Set(kindKey, kind)
		defer func() {
			if id := c.GetString(slotKey); id != "" {
				l.slots.release(id)
			}
		}()
		c.Next()
	}
}

// admit applies the per-session limits of the request's route to session id
// and takes a run slot; false means the request was refused.
func (l *limits) admit(c *gin.Context, id string) bool {
	if c.GetString(slotKey) != "" {
		return true // admitted already
	}
	if c.GetString(kindKey) == runInstall {
		if l.refuse(c, l.install.take(id, l.now()), "session_install", "session %q: more than %s installs", id, l.opt.InstallRate.human()) {
			return false
		}
	} else if l.refuse(c, l.exec.take(id, l.now()), "session_exec", "session %q: more than %s runs", id, l.opt.ExecRate.human()) {
		return false
	}
	if !l.slots.acquire(id) {
		l.refuse(c, time.Second, "concurrency", "session %q: %d runs (execute, shell, install) at once already", id, l.opt.MaxConcurrentExecs)
		return false
	}
	c.Set(slotKey, id)
	return true
}

// refuse answers 429 with Retry-After when wait is positive.
func (l *limits) refuse(c *gin.Context, wait time.Duration, limit, format string, args ...any) bool {
	if wait <= 0 {
		return false
	}
	fail(c, refusal(c, wait, l.onLimited, limit, format, args...))
	return true
}

// refusal readies a 429 of limit for c: it counts it (onLimited, for
// /metrics), sets Retry-After to wait (a second at least) and Connection:
// close (a refused client keeps no idle connection in the daemon either),
// and returns the errRateLimited that format and args describe.
func refusal(c *gin.Context, wait time.Duration, onLimited func(string), limit, format string, args ...any) error {
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	if onLimited != nil {
		onLimited(limit)
	}
	c.Header("Retry-After", strconv.Itoa(secs))
	c.Header("Connection", "close")
	return fmt.Errorf(format+"; retry in %ds: %w", append(args, secs, errRateLimited)...)
}

// clientKey is the address a client is limited by: its IP, or for IPv6 its
// /64, which one host can hold whole.
func clientKey(ip string) string {
	addr := net.ParseIP(ip)
	if addr == nil || addr.To4() != nil {
		return ip
	}
	return (&net.IPNet{IP: addr.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}
