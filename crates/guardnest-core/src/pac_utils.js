// GuardNest's PAC helper functions (Netscape's PAC specification, written for GuardNest).
// dnsResolve and myIpAddress are native; everything else is plain JavaScript over them.
function isPlainHostName(host) { return String(host).indexOf('.') < 0; }
function dnsDomainIs(host, domain) {
  host = String(host).toLowerCase(); domain = String(domain).toLowerCase();
  return host.length >= domain.length && host.substring(host.length - domain.length) === domain;
}
function localHostOrDomainIs(host, hostdom) {
  host = String(host).toLowerCase(); hostdom = String(hostdom).toLowerCase();
  return host === hostdom || hostdom.lastIndexOf(host + '.', 0) === 0;
}
function isResolvable(host) { return dnsResolve(host) != null; }
function __ip4(text) {
  var m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(String(text));
  if (!m) return null;
  var n = 0;
  for (var i = 1; i <= 4; i++) { var b = +m[i]; if (b > 255) return null; n = n * 256 + b; }
  return n;
}
function isInNet(host, pattern, mask) {
  var ip = __ip4(host);
  if (ip === null) { var r = dnsResolve(host); if (r == null) return false; ip = __ip4(r); if (ip === null) return false; }
  var p = __ip4(pattern), m = __ip4(mask);
  if (p === null || m === null) return false;
  // Compare byte by byte: JavaScript's bit operators are signed 32-bit.
  for (var s = 3; s >= 0; s--) {
    var d = Math.pow(256, s);
    var a = Math.floor(ip / d) % 256, b = Math.floor(p / d) % 256, k = Math.floor(m / d) % 256;
    if ((a & k) !== (b & k)) return false;
  }
  return true;
}
function dnsDomainLevels(host) { return String(host).split('.').length - 1; }
var __sh = {}, __shCount = 0;
function shExpMatch(str, shexp) {
  shexp = String(shexp);
  var re = __sh['$' + shexp];
  if (!re) {
    if (__shCount > 256) { __sh = {}; __shCount = 0; }
    re = new RegExp('^' + shexp.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
    __sh['$' + shexp] = re; __shCount++;
  }
  return re.test(String(str));
}
var __days = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
var __months = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
function __gmt(args) { return args.length > 0 && args[args.length - 1] === 'GMT'; }
function __args(args) { var a = Array.prototype.slice.call(args); if (__gmt(a)) a.pop(); return a; }
function weekdayRange() {
  var gmt = __gmt(arguments), a = __args(arguments), now = new Date();
  var today = gmt ? now.getUTCDay() : now.getDay();
  var w1 = __days.indexOf(String(a[0]).toUpperCase()), w2 = a.length > 1 ? __days.indexOf(String(a[1]).toUpperCase()) : w1;
  if (w1 < 0 || w2 < 0) return false;
  return w1 <= w2 ? (today >= w1 && today <= w2) : (today >= w1 || today <= w2);
}
function __inRange(v, lo, hi) { return lo <= hi ? (v >= lo && v <= hi) : (v >= lo || v <= hi); }
function dateRange() {
  var gmt = __gmt(arguments), a = __args(arguments), now = new Date();
  var D = gmt ? now.getUTCDate() : now.getDate(), M = gmt ? now.getUTCMonth() : now.getMonth();
  var Y = gmt ? now.getUTCFullYear() : now.getFullYear();
  // Each argument is a day (1-31), a month name or a year (> 31); one or two of each kind.
  var parts = a.map(function (x) {
    var m = __months.indexOf(String(x).toUpperCase());
    if (m >= 0) return { k: 'm', v: m };
    var n = +x;
    return n > 31 ? { k: 'y', v: n } : { k: 'd', v: n };
  });
  if (parts.length === 1) {
    var p = parts[0];
    return p.k === 'd' ? D === p.v : p.k === 'm' ? M === p.v : Y === p.v;
  }
  var half = parts.length / 2;
  if (half !== Math.floor(half)) return false;
  var from = parts.slice(0, half), to = parts.slice(half);
  function key(ps, dflt) {
    var y = dflt.y, m = dflt.m, d = dflt.d;
    ps.forEach(function (p) { if (p.k === 'y') y = p.v; else if (p.k === 'm') m = p.v; else d = p.v; });
    return y * 10000 + m * 100 + d;
  }
  var kinds = from.map(function (p) { return p.k; }).join('');
  var cur = (kinds.indexOf('y') >= 0 ? Y * 10000 : 0) + (kinds.indexOf('m') >= 0 ? M * 100 : 0) + (kinds.indexOf('d') >= 0 ? D : 0);
  var lo = key(from, { y: 0, m: 0, d: 0 }), hi = key(to, { y: 0, m: 0, d: 0 });
  return __inRange(cur, lo, hi);
}
function timeRange() {
  var gmt = __gmt(arguments), a = __args(arguments).map(Number), now = new Date();
  var h = gmt ? now.getUTCHours() : now.getHours(), mi = gmt ? now.getUTCMinutes() : now.getMinutes();
  var s = gmt ? now.getUTCSeconds() : now.getSeconds(), cur = h * 3600 + mi * 60 + s;
  if (a.length === 1) return h === a[0];
  if (a.length === 2) return a[0] === a[1] ? h === a[0] : a[0] < a[1] ? (h >= a[0] && h < a[1]) : (h >= a[0] || h < a[1]);
  if (a.length === 4) return __inRange(cur, a[0] * 3600 + a[1] * 60, a[2] * 3600 + a[3] * 60 - 1);
  if (a.length === 6) return __inRange(cur, a[0] * 3600 + a[1] * 60 + a[2], a[3] * 3600 + a[4] * 60 + a[5]);
  return false;
}
