// i18n.js holds the console's words in zh-CN and en. The language comes
// from the browser (navigator.languages) until the user switches; the
// choice is kept in localStorage (a preference, not a secret). Dates and
// numbers go through Intl, so no library is needed for them.
const en = {
  cases: 'Cases', report: 'Report',
  caseStatus: { received: 'received', registered: 'registered', dispatched: 'dispatched', handling: 'handling', suspended: 'suspended', handled: 'handled', verified: 'verified', closed: 'closed', voided: 'voided' },
  sources: { alert: 'sensor', camera: 'camera', patrol: 'patrol', hotline: '12345', operator: 'operator' }, source: 'Source',
  dueCase: { sign: 'sign for in {t}', handle: 'handle in {t}', close: 'close in {t}', signLabel: 'Sign-for deadline', handleLabel: 'Handling deadline', closeLabel: 'Closing deadline' }, dueNow: 'Time left', chartTime: 'Time', stat: { avg: 'avg', min: 'min', max: 'max' }, pending: 'pending: nothing due yet', noStill: 'no picture yet',
  caseActions: { register: 'Register', merge: 'Merge', void: 'Void', dispatch: 'Dispatch', sign: 'Sign for', return: 'Return', note: 'Note', extend_request: 'Ask for more time', extend_approve: 'Approve extension', extend_reject: 'Refuse extension', suspend_request: 'Ask to suspend', suspend_approve: 'Approve suspension', suspend_reject: 'Refuse suspension', resume: 'Resume', handle: 'Report handled', verify_pass: 'Verified', verify_fail: 'Rework', close: 'Close', evaluate: 'Evaluate', supervise: 'Supervise' },
  caseEvents: { receive: 'received', register: 'registered', merge: 'merged', void: 'voided', dispatch: 'dispatched', sign: 'signed for', return: 'returned', note: 'note', extend_request: 'extension asked', extend_approve: 'extension approved', extend_reject: 'extension refused', suspend_request: 'suspension asked', suspend_approve: 'suspended', suspend_reject: 'suspension refused', resume: 'resumed', handle: 'handled', verify_pass: 'verified', verify_fail: 'rework', close: 'closed', evaluate: 'evaluated', supervise: 'supervised', remind: 'reminder', overdue: 'overdue', escalate: 'escalated' },
  bulkSign: 'Sign for {n}', photos: 'Photos', photosAttached: '{n} attached', reasonPlaceholder: 'Note or reason (required for a note, void, return, refusal, rework)',
  description: 'Description', reporter: 'Reported by', receivedAt: 'Received', address: 'Address', levels: { component: 'Components (部件)', event: 'Events (事件)' },
  useGPS: 'Use my location', clickMap: 'or click the map', noGPS: 'No location service in this browser.', submitReport: 'Report',
  brand: 'gridwatch', queue: 'Alerts', map: 'Grid map', cameras: 'Camera wall', ranking: 'Evaluation', ops: 'Operations',
  device: 'Device', camera: 'Camera',
  signIn: 'Sign in', signOut: 'Sign out', token: 'API token', tokenHelp: 'Paste a bearer token (gridwatch token new). It is kept for this browser session only.',
  badToken: 'This token is not accepted.', signedInAs: 'Signed in as', role: 'Role', scope: 'Scope', wholeCity: 'whole city',
  roles: { viewer: 'viewer', reporter: 'reporter', unit: 'unit', operator: 'operator', dispatcher: 'dispatcher', supervisor: 'supervisor', admin: 'admin', system: 'system' },
  lang: '中文', theme: 'Theme', themes: { auto: 'auto', light: 'light', dark: 'dark' },
  loading: 'Loading…', error: 'Error', retry: 'Retry', none: 'Nothing to show.', back: 'Back',
  live: { live: 'live', connecting: 'connecting', reconnecting: 'reconnecting' },
  severity: { info: 'info', minor: 'minor', major: 'major', critical: 'critical' },
  condition: { pending: 'pending', firing: 'firing', cleared: 'cleared', inactive: 'inactive' },
  categories: { municipal: 'municipal', water: 'water', environment: 'environment', lighting: 'lighting', sanitation: 'sanitation', heating: 'heating', construction: 'construction', gas: 'gas', fire: 'fire', video: 'video' },
  events: { fire: 'fired', refire: 'fired again', clear: 'cleared', escalate: 'escalated', deescalate: 'de-escalated', overdue: 'overdue', remind: 'reminder', join: 'joined', ack: 'signed for', dispatch: 'dispatched', resolve: 'resolved', close: 'closed', reopen: 'reopened', comment: 'comment', case: 'taken in as a case', unsilence: 'silence ended' },
  filters: 'Filters ({n})', firedSince: 'Fired since', all: 'all', filterStatus: 'Status', filterSeverity: 'Severity', filterCategory: 'Category', filterUnit: 'Unit', filterGrid: 'Grid', filterOverdue: 'Overdue only', search: 'Search',
  urgency: { emergency: 'emergency', routine: 'routine' }, receivedFrom: 'Received from', receivedTo: 'Received to',
  sort: 'Sort', sorts: { fired: 'newest', due: 'deadline', severity: 'severity' },
  shown: '{n} of {total}', loadingMore: 'loading {n}…', selected: '{n} selected', clearSel: 'Clear', selectShown: 'Select the {n} shown',
  bulkDispatch: 'Dispatch {n}', unitRouted: 'routed unit',
  done: '{n} done', skipped: '{n} skipped (not allowed in their status)', failed: '{n} failed', conflict: 'Case {id} was changed by someone else meanwhile (now version {v}); it was reloaded: look again and retry.',
  overdueBy: 'overdue {t}', deadlineSet: 'due {t}', met: 'met', missed: 'missed', noDue: '—',
  fired: 'Fired', updated: 'Updated', clearedAt: 'Cleared', conditionLabel: 'Condition', case: 'Case', caseOf: 'case {id}', noCaseYet: 'no case yet', escalated: 'escalated', members: 'Devices',
  timeline: 'Timeline', actor: 'Actor', note: 'Note', unit: 'Unit', grid: 'Grid', value: 'Value', summary: 'Summary', rule: 'Rule',
  noActions: 'Your role ({role}) may only look.',
  meta: 'Details', type: 'Type', name: 'Name', location: 'Location', online: 'online', offline: 'offline', alerting: 'alerting', since: 'since', installed: 'Installed',
  latest: 'Latest values', telemetry: 'Telemetry', metric: 'Metric', range: 'Range', noData: 'No readings in this range.',
  whereIs: 'Where', openCases: 'open', overdueCases: 'overdue', devices: 'devices', legend: 'Legend', showDevices: 'Devices', openQueue: 'Open its cases',
  faultyOnly: 'Faulty only', codec: 'Codec', resolution: 'Resolution', fps: 'fps', bitrate: 'Bitrate', lastProbe: 'Last probe', lastSample: 'Last stream sample', cameraHealth: 'Camera health', loss: 'loss', bySample: 'as the latest stream sample found', availability: 'Availability (7 d)', probes: 'Probes', never: 'never probed',
  camStatus: { ok: 'ok', degraded: 'degraded', unreachable: 'unreachable', refused: 'refused', auth_failed: 'auth failed', not_found: 'not found', no_video_track: 'no video', unsupported_codec: 'unsupported codec', stalled: 'stalled', error: 'error' }, quiet: 'no open cases',
  spoolKeys: { segments: 'segments', rows: 'rows waiting', bytes: 'size', max_bytes: 'bound', oldest_segment_age_seconds: 'oldest (s)', replay_rows_per_second: 'replay (rows/s)', quarantined_segments: 'quarantined' },
  ready: 'Ready', notReady: 'Not ready', checks: 'Checks', spool: 'Spool', losses: 'Losses', noLosses: 'Nothing lost.', ingestRate: 'Ingest', perSecond: '{n}/s', messages: 'messages', readings: 'readings stored', chState: 'state', chBatches: 'batches stored', chInsert: 'mean INSERT', chRetries: 'INSERTs retried', chFailed: 'batches given up',
  units: 'Units', grids: 'Grids', rank: 'Rank', score: 'Score', received: 'Received', ackOnTime: 'Signed for on time', overdueTotal: 'Overdue', mttr: 'MTTR', callIn: 'call-in', trend: 'Score by month', band: 'Band', composite: 'Composite', handledOnTime: 'Handled on time', closingRate: 'Closed', pendingCases: 'Pending', pendingHint: 'Cases not closed and not yet due: the rates leave them out until they are done or late', reworkRate: 'Rework', satisfaction: 'Satisfaction', dispatchers: 'Dispatchers', publicRanking: 'Public ranking (HTML)',
  views: { caseUnits: 'Cases · units', caseGrids: 'Cases · grids', caseDispatchers: 'Cases · dispatchers' }, period: 'Period', thisMonth: 'this month', lastMonth: 'last month', thisQuarter: 'this quarter', lastQuarter: 'last quarter', last30: 'last 30 days',
  notFound: 'Not found (or outside your scope).',
};

const zh = {
  cases: '案卷队列', report: '上报',
  caseStatus: { received: '已受理', registered: '已立案', dispatched: '已派遣', handling: '处置中', suspended: '挂账', handled: '已处置', verified: '已核查', closed: '已结案', voided: '已作废' },
  sources: { alert: '传感器', camera: '摄像机', patrol: '巡查', hotline: '12345', operator: '值班员' }, source: '来源',
  dueCase: { sign: '{t} 内签收', handle: '{t} 内处置', close: '{t} 内结案', signLabel: '签收时限', handleLabel: '处置时限', closeLabel: '结案时限' }, dueNow: '剩余时间', chartTime: '时间', stat: { avg: '平均', min: '最小', max: '最大' }, pending: '待定：尚无到期', noStill: '暂无画面',
  caseActions: { register: '立案', merge: '合并', void: '作废', dispatch: '派遣', sign: '签收', return: '回退', note: '备注', extend_request: '申请延期', extend_approve: '批准延期', extend_reject: '驳回延期', suspend_request: '申请挂账', suspend_approve: '批准挂账', suspend_reject: '驳回挂账', resume: '恢复', handle: '处置完毕', verify_pass: '核查通过', verify_fail: '返工', close: '结案', evaluate: '评价', supervise: '督办' },
  caseEvents: { receive: '受理', register: '立案', merge: '合并', void: '作废', dispatch: '派遣', sign: '签收', return: '回退', note: '备注', extend_request: '申请延期', extend_approve: '批准延期', extend_reject: '驳回延期', suspend_request: '申请挂账', suspend_approve: '挂账', suspend_reject: '驳回挂账', resume: '恢复', handle: '处置', verify_pass: '核查通过', verify_fail: '返工', close: '结案', evaluate: '评价', supervise: '督办', remind: '催办', overdue: '超时', escalate: '升级' },
  bulkSign: '签收 {n} 件', photos: '照片', photosAttached: '已附 {n} 张', reasonPlaceholder: '备注或理由（备注、作废、回退、驳回、返工时必填）',
  description: '问题描述', reporter: '上报人', receivedAt: '受理时间', address: '地址', levels: { component: '部件', event: '事件' },
  useGPS: '使用当前位置', clickMap: '或在地图上点选', noGPS: '此浏览器不支持定位。', submitReport: '上报',
  brand: 'gridwatch', queue: '告警', map: '网格地图', cameras: '视频墙', ranking: '考核评价', ops: '运行状态',
  device: '设备', camera: '摄像机',
  signIn: '登录', signOut: '退出', token: 'API 令牌', tokenHelp: '粘贴访问令牌（gridwatch token new）。令牌只保存在本次浏览器会话中。',
  badToken: '令牌无效。', signedInAs: '当前用户', role: '角色', scope: '范围', wholeCity: '全市',
  roles: { viewer: '查看员', reporter: '网格员', unit: '责任单位', operator: '值班员', dispatcher: '派遣员', supervisor: '监督员', admin: '管理员', system: '系统' },
  lang: 'English', theme: '主题', themes: { auto: '自动', light: '浅色', dark: '深色' },
  loading: '加载中…', error: '错误', retry: '重试', none: '暂无内容。', back: '返回',
  live: { live: '实时', connecting: '连接中', reconnecting: '重新连接中' },
  severity: { info: '提示', minor: '一般', major: '重要', critical: '紧急' },
  condition: { pending: '待定', firing: '告警中', cleared: '已恢复', inactive: '未激活' },
  categories: { municipal: '市政', water: '水务', environment: '环境', lighting: '照明', sanitation: '环卫', heating: '供热', construction: '住建', gas: '燃气', fire: '消防', video: '视频' },
  events: { fire: '告警', refire: '再次告警', clear: '恢复', escalate: '升级', deescalate: '降级', overdue: '超时', remind: '催办', join: '合并', ack: '签收', dispatch: '派遣', resolve: '处置', close: '结案', reopen: '重开', comment: '备注', case: '转为案卷', unsilence: '静默结束' },
  filters: '筛选（{n}）', firedSince: '告警日期起', all: '全部', filterStatus: '状态', filterSeverity: '级别', filterCategory: '类别', filterUnit: '责任单位', filterGrid: '网格', filterOverdue: '只看超时', search: '搜索',
  urgency: { emergency: '紧急', routine: '一般' }, receivedFrom: '受理日期起', receivedTo: '受理日期止',
  sort: '排序', sorts: { fired: '最新', due: '时限', severity: '级别' },
  shown: '{n} / {total}', loadingMore: '正在加载 {n}…', selected: '已选 {n}', clearSel: '清除', selectShown: '全选所示 {n} 件',
  bulkDispatch: '派遣 {n} 件', unitRouted: '默认单位',
  done: '成功 {n} 件', skipped: '跳过 {n} 件（当前状态不可操作）', failed: '失败 {n} 件', conflict: '案卷 {id} 已被他人修改（当前版本 {v}），已重新加载，请确认后重试。',
  overdueBy: '已超时 {t}', deadlineSet: '时限 {t}', met: '按时', missed: '超时', noDue: '—',
  fired: '告警时间', updated: '更新时间', clearedAt: '恢复时间', conditionLabel: '状态', case: '案卷', caseOf: '案卷 {id}', noCaseYet: '尚未立卷', escalated: '已升级', members: '设备',
  timeline: '处理过程', actor: '操作人', note: '备注', unit: '责任单位', grid: '网格', value: '数值', summary: '摘要', rule: '规则',
  noActions: '您的角色（{role}）只能查看。',
  meta: '基本信息', type: '类型', name: '名称', location: '位置', online: '在线', offline: '离线', alerting: '告警', since: '自', installed: '安装日期',
  latest: '最新读数', telemetry: '监测曲线', metric: '指标', range: '时间范围', noData: '该时间段内没有读数。',
  whereIs: '位置', openCases: '在办', overdueCases: '超时', devices: '设备', legend: '图例', showDevices: '设备', openQueue: '查看其案卷',
  faultyOnly: '只看故障', codec: '编码', resolution: '分辨率', fps: '帧率', bitrate: '码率', lastProbe: '最近检测', lastSample: '最近取流', cameraHealth: '摄像机状态', loss: '丢包', bySample: '按最近一次取流检测', availability: '在线率（7 天）', probes: '检测记录', never: '尚未检测',
  camStatus: { ok: '正常', degraded: '质量下降', unreachable: '无法连接', refused: '拒绝连接', auth_failed: '认证失败', not_found: '流不存在', no_video_track: '无视频', unsupported_codec: '编码不支持', stalled: '画面停滞', error: '错误' }, quiet: '无在办',
  spoolKeys: { segments: '段数', rows: '待写行数', bytes: '大小', max_bytes: '上限', oldest_segment_age_seconds: '最旧（秒）', replay_rows_per_second: '回放（行/秒）', quarantined_segments: '隔离段' },
  ready: '就绪', notReady: '未就绪', checks: '检查项', spool: '磁盘缓存', losses: '数据损失', noLosses: '没有数据损失。', ingestRate: '接入速率', perSecond: '{n}/秒', messages: '消息', readings: '已存读数', chState: '状态', chBatches: '写入批次', chInsert: '平均写入耗时', chRetries: '写入重试', chFailed: '放弃的批次',
  units: '单位', grids: '网格', rank: '排名', score: '得分', received: '受理', ackOnTime: '按时签收', overdueTotal: '超时', mttr: '平均处置用时', callIn: '约谈', trend: '月度得分', band: '档次', composite: '综合指标', handledOnTime: '按期处置', closingRate: '结案率', pendingCases: '在办未到期', pendingHint: '未结案且未超期的案件：办结或超期前不计入各项比率', reworkRate: '返工率', satisfaction: '满意度', dispatchers: '派遣员', publicRanking: '公开排名（HTML）',
  views: { caseUnits: '案卷 · 单位', caseGrids: '案卷 · 网格', caseDispatchers: '案卷 · 派遣员' }, period: '时段', thisMonth: '本月', lastMonth: '上月', thisQuarter: '本季度', lastQuarter: '上季度', last30: '近 30 天',
  notFound: '未找到（或不在您的范围内）。',
};

const dicts = { en, 'zh-CN': zh };
const langKey = 'gridwatch.lang';

function pick() {
  const saved = localStorage.getItem(langKey);
  if (saved && dicts[saved]) return saved;
  for (const l of navigator.languages || [navigator.language]) {
    if (/^zh/i.test(l)) return 'zh-CN';
    if (/^en/i.test(l)) return 'en';
  }
  return 'en';
}

export let lang = pick();

export function setLang(l) {
  lang = l;
  localStorage.setItem(langKey, l);
  document.documentElement.lang = l;
}
document.documentElement.lang = lang;

// t returns the text of key (a dotted path, such as "status.new") in the
// current language, with {name} replaced from vars; an unknown key is
// shown as itself, so a value without a translation (a new status) still
// reads.
export function t(key, vars) {
  let v = key.split('.').reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), dicts[lang]);
  if (v === undefined) v = key.split('.').reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), en);
  if (typeof v !== 'string') v = key.includes('.') ? key.slice(key.lastIndexOf('.') + 1) : key;
  return vars ? v.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? '')) : v;
}

const dateFmt = {};
// fmtMonth names the month of an epoch time in ms: "Dec 2026", "2026年12月".
const monthFmt = {};
export function fmtMonth(ms) {
  monthFmt[lang] ||= new Intl.DateTimeFormat(lang, { year: 'numeric', month: 'short' });
  return monthFmt[lang].format(new Date(ms));
}

// fmtTick writes a chart's time tick (epoch ms) in the console's language,
// 24-hour: the time of day within a span of two days (the date, too, at
// midnight), else the day.
const tickFmt = {};
export function fmtTick(ms, spanMs) {
  const k = lang + (spanMs > 2 * 86400e3 ? 'd' : 't');
  tickFmt[k] ||= new Intl.DateTimeFormat(lang, spanMs > 2 * 86400e3 ? { month: '2-digit', day: '2-digit' } : { hour: '2-digit', minute: '2-digit', hour12: false });
  const d = new Date(ms);
  const s = tickFmt[k].format(d);
  if (spanMs > 2 * 86400e3 || d.getHours() || d.getMinutes()) return s;
  tickFmt[lang + 'm'] ||= new Intl.DateTimeFormat(lang, { month: '2-digit', day: '2-digit' });
  return tickFmt[lang + 'm'].format(d) + '\n' + s;
}

export function fmtTime(v) {
  if (!v) return '—';
  const d = typeof v === 'number' ? new Date(v) : new Date(Date.parse(v));
  if (isNaN(d)) return '—';
  dateFmt[lang] ||= new Intl.DateTimeFormat(lang, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  return dateFmt[lang].format(d);
}

export function fmtNum(v, digits = 1) {
  if (v === undefined || v === null || isNaN(v)) return '—';
  return new Intl.NumberFormat(lang, { maximumFractionDigits: digits }).format(v);
}

// fmtBytes writes a size in bytes with a binary unit: 1.5 MiB.
export function fmtBytes(n) {
  if (n === undefined || n === null || isNaN(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return fmtNum(n, i ? 1 : 0) + ' ' + units[i];
}

// fmtDur writes a duration in ms compactly: 45s, 12m, 3h 05m, 2d 4h.
export function fmtDur(ms) {
  const zhL = lang === 'zh-CN';
  const s = Math.max(0, Math.round(Math.abs(ms) / 1000));
  const u = zhL ? { d: '天', h: '小时', m: '分', s: '秒' } : { d: 'd', h: 'h', m: 'm', s: 's' };
  if (s < 60) return s + u.s;
  const m = Math.floor(s / 60);
  if (m < 60) return m + u.m;
  const h = Math.floor(m / 60);
  if (h < 48) return h + u.h + ' ' + String(m % 60).padStart(2, '0') + u.m;
  return Math.floor(h / 24) + u.d + ' ' + (h % 24) + u.h;
}
